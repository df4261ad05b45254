"""Crossbar-aware scheme: whole zero crossbars, per-row-block columns, input reorder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import LayerSpec
from pruning import get_scheme
from pruning.schemes.crossbar import CrossbarGeometry, permute_inputs


def unrolled_blocks(mask: torch.Tensor, geo: CrossbarGeometry) -> np.ndarray:
    """The unrolled ``K x Cout`` matrix cut into its blocks: (row_blocks, col_blocks, R, XB)."""
    mat = mask.reshape(geo.out_channels, geo.fan_in).T.numpy().astype(float)
    rows = geo.row_blocks * geo.rows_per_block
    cols = geo.col_blocks * geo.crossbar_size
    padded = np.full((rows, cols), np.nan)
    padded[: geo.fan_in, : geo.out_channels] = mat
    return padded.reshape(
        geo.row_blocks, geo.rows_per_block, geo.col_blocks, geo.crossbar_size
    ).transpose(0, 2, 1, 3)


def test_geometry_keeps_whole_kernels():
    geo = CrossbarGeometry.of(LayerSpec("c", "conv", 64, 200, (3, 3)), 128)
    assert geo.rows_per_block == 126 and geo.row_blocks == 5 and geo.col_blocks == 2
    lin = CrossbarGeometry.of(LayerSpec("fc", "linear", 300, 10), 128)
    assert lin.rows_per_block == 128 and lin.row_blocks == 3


# Layer shapes, crossbar sizes and reorder flags both grains are tested over.
LAYER_CASES = {
    "cout": st.integers(1, 40),
    "cin": st.integers(1, 12),
    "k": st.sampled_from([1, 3]),
    "xb": st.sampled_from([8, 16, 32]),
    "reorder": st.booleans(),
    "seed": st.integers(0, 2**16),
}


@settings(max_examples=30, deadline=None)
@given(**LAYER_CASES)
def test_crossbar_grain_zeroes_whole_blocks(cout, cin, k, xb, reorder, seed):
    layer = LayerSpec("c", "conv", cin, cout, (k, k))
    scheme = get_scheme("crossbar", crossbar_size=xb, grain="crossbar", reorder=reorder)
    w = torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))
    geo = scheme.geometry(layer)
    order = scheme.input_order(w, layer)
    energy = unrolled_blocks(permute_inputs(w, order, False) ** 2, geo)
    block_energy = np.nansum(energy, axis=(2, 3)).ravel()
    masks = scheme.masks_for_levels(w, layer)
    total = geo.row_blocks * geo.col_blocks
    for level, mask in zip(scheme.levels(layer), masks, strict=True):
        b = round(level * total)
        blocks = unrolled_blocks(permute_inputs(mask, order, False), geo)
        kept = np.nanmax(blocks, axis=(2, 3)).ravel()
        # Every block is all kept or all zero, and exactly b survive.
        assert np.array_equal(np.nanmin(blocks, axis=(2, 3)).ravel(), kept)
        assert kept.sum() == b
        # The kept blocks carry the most energy possible for b blocks.
        best = np.sort(block_energy)[::-1][:b].sum()
        assert block_energy[kept == 1].sum() == pytest.approx(best, rel=1e-5)
    for lo, hi in zip(masks, masks[1:], strict=False):
        assert not (lo & ~hi).any()


@settings(max_examples=30, deadline=None)
@given(**LAYER_CASES, density=st.floats(0.01, 1.0))
def test_column_grain_keeps_c_columns_per_row_block(cout, cin, k, xb, reorder, density, seed):
    layer = LayerSpec("c", "conv", cin, cout, (k, k))
    scheme = get_scheme("crossbar", crossbar_size=xb, grain="column", reorder=reorder)
    w = torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))
    geo = scheme.geometry(layer)
    order = scheme.input_order(w, layer)
    levels = scheme.levels(layer)
    assert set(range(xb, cout, xb)) <= {round(v * cout) for v in levels}
    mask = scheme.mask(w, density, layer)
    level = scheme.snap(density, layer)
    c = round(level * cout)
    assert mask.sum().item() == c * geo.fan_in  # level == weight density exactly
    mat = permute_inputs(mask, order, False).reshape(cout, geo.fan_in).T.numpy()
    energy = (permute_inputs(w, order, False) ** 2).reshape(cout, geo.fan_in).T.numpy()
    for rb in range(geo.row_blocks):
        rows = slice(rb * geo.rows_per_block, (rb + 1) * geo.rows_per_block)
        cols = mat[rows].any(0)
        assert np.array_equal(mat[rows].all(0), cols), "columns are whole"
        assert cols.sum() == c
        col_energy = energy[rows].sum(0)
        best = np.sort(col_energy)[::-1][:c].sum()
        assert col_energy[cols].sum() == pytest.approx(best, rel=1e-5)


def test_reorder_groups_weak_channels_and_keeps_more_energy():
    layer = LayerSpec("c", "conv", 28, 16, (3, 3))
    gen = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 0.01] * 14).view(1, 28, 1, 1)  # weak channels interleaved
    w = torch.randn(layer.weight_shape, generator=gen) * scale
    plain = get_scheme("crossbar", crossbar_size=32, grain="crossbar")
    reordered = get_scheme("crossbar", crossbar_size=32, grain="crossbar", reorder=True)
    order = reordered.input_order(w, layer)
    assert set(order[:14].tolist()) == set(range(0, 28, 2))
    kept = [(w[s.mask(w, 0.5, layer)] ** 2).sum().item() for s in (plain, reordered)]
    assert kept[1] > kept[0]


def test_crossbar_levels_follow_a_grid_on_large_layers():
    layer = LayerSpec("c", "conv", 512, 512, (3, 3))  # 37 x 4 = 148 crossbars
    levels = get_scheme("crossbar", steps=32).levels(layer)
    assert len(levels) == 32 and levels[-1] == 1.0
    assert np.allclose(levels * 148, np.round(levels * 148))


def test_bad_grain():
    with pytest.raises(ValueError, match="grain"):
        get_scheme("crossbar", grain="row")
