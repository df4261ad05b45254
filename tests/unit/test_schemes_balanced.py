"""Balanced (Kang N-of-M) and unstructured schemes: structure, optimality, torch parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from hwmodels import HardwareModel, LayerSpec
from pruning import get_scheme
from pruning.schemes.balanced import last_group_quota


def conv_layer(cout: int, cin: int, k: int, groups: int = 1) -> LayerSpec:
    kind = "conv" if groups == 1 else "grouped"
    return LayerSpec("l", kind, cin, cout, (k, k), groups=groups)


class _StructureOnly(HardwareModel):
    """A hardware stub that only offers structural defaults."""

    family = "stub"

    def __init__(self, structure: dict[str, int]) -> None:
        super().__init__(params=None)
        self._structure = structure

    def cost(self, layer, mask=None):  # pragma: no cover - never called
        raise NotImplementedError

    def structure(self) -> dict[str, int]:
        return dict(self._structure)


@settings(max_examples=40, deadline=None)
@given(
    cout=st.integers(1, 6),
    cin=st.integers(1, 40),
    k=st.sampled_from([1, 3]),
    m=st.integers(2, 16),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_balanced_invariants(cout, cin, k, m, density, seed):
    layer = conv_layer(cout, cin, k)
    scheme = get_scheme("balanced", group_size=m)
    w = torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))
    levels = scheme.levels(layer)
    masks = scheme.masks_for_levels(w, layer)
    fan_in = layer.fan_in
    full, r = divmod(fan_in, m)
    for level, mask in zip(levels, masks, strict=True):
        assert mask.dtype == torch.bool and mask.shape == w.shape
        assert mask.sum().item() / mask.numel() == pytest.approx(level)
        rows = mask.reshape(cout, fan_in)
        absw = w.abs().reshape(cout, fan_in)
        # The n of this level, recovered from the first full (or only) group.
        n = int(rows[0, : min(m, fan_in)].sum()) if full else None
        for g in range(full + (1 if r else 0)):
            sl = slice(g * m, min((g + 1) * m, fan_in))
            counts = rows[:, sl].sum(1)
            assert len(set(counts.tolist())) == 1, "every row keeps the same count"
            if n is not None:
                want = n if g < full else last_group_quota(n, m, fan_in)
                assert int(counts[0]) == want
            # Optimal: kept magnitude equals the sum of the top-count magnitudes.
            c = int(counts[0])
            top = absw[:, sl].topk(c, dim=1).values.sum()
            assert (absw[:, sl] * rows[:, sl]).sum().item() == pytest.approx(top.item(), rel=1e-5)
    # Nested as the density falls.
    for lo, hi in zip(masks, masks[1:], strict=False):
        assert not (lo & ~hi).any()
    # A request rounds down to a level, within one level of the request.
    got_mask = scheme.mask(w, density, layer)
    got = got_mask.sum().item() / got_mask.numel()
    # ... or n / m's level, which a short last group's rounded-up quota puts less than one
    # weight per row (1 / fan_in) above n / m.
    assert got <= density + 1 / fan_in + 1e-9 or got == pytest.approx(levels[0])
    above = levels[levels > got + 1e-12]
    assert above.size == 0 or density < above[0] + 1e-9


def test_balanced_levels_are_n_over_m_when_m_divides_k():
    layer = conv_layer(32, 16, 3)  # K = 144 = 9 * 16
    scheme = get_scheme("balanced", group_size=16)
    np.testing.assert_allclose(scheme.levels(layer), np.arange(1, 17) / 16)


def test_balanced_linear_and_depthwise():
    scheme = get_scheme("balanced", group_size=8)
    lin = LayerSpec("fc", "linear", 20, 5)
    w = torch.randn(lin.weight_shape)
    mask = scheme.mask(w, 0.25, lin)  # n = 2 per group of 8, last group of 4 keeps 1
    rows = mask.reshape(5, 20)
    assert rows[:, :8].sum(1).eq(2).all() and rows[:, 16:].sum(1).eq(1).all()
    dw = LayerSpec("dw", "depthwise", 4, 4, (3, 3), groups=4)
    # With m = 16 a 3x3 depthwise kernel (K = 9) is one short group: n = 8 keeps 5 of 9.
    dwm = get_scheme("balanced", group_size=16).mask(torch.randn(dw.weight_shape), 0.56, dw)
    assert dwm.reshape(4, 9).sum(1).eq(math.ceil(8 * 9 / 16)).all()


def test_group_size_from_hardware_and_override():
    hw = _StructureOnly({"group_size": 4, "crossbar_size": 64})
    assert get_scheme("balanced", hardware=hw).group_size == 4
    assert get_scheme("balanced", hardware=hw, group_size=8).group_size == 8
    assert get_scheme("balanced").group_size == 16


def test_bad_parameters_and_densities():
    with pytest.raises(ValueError, match="group_size"):
        get_scheme("balanced", group_size=0)
    layer = conv_layer(4, 16, 1)
    scheme = get_scheme("balanced", group_size=16)
    w = torch.randn(layer.weight_shape)
    with pytest.raises(ValueError, match="not a level"):
        scheme.mask(w, 0.3, layer, exact=True)
    with pytest.raises(ValueError, match="outside"):
        scheme.mask(w, 1.5, layer)
    with pytest.raises(ValueError, match="does not match"):
        scheme.mask(torch.randn(3, 3), 0.5, layer)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.sampled_from([(7,), (4, 5), (6, 3, 3, 3), (2, 1, 5, 5), (40, 3)]),
    seed=st.integers(0, 2**16),
)
def test_unstructured_matches_torch_l1(shape, seed):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if len(shape) == 4:
        layer = LayerSpec("c", "conv", shape[1], shape[0], (shape[2], shape[3]))
    else:
        shape2 = (shape[0], 1) if len(shape) == 1 else shape
        layer = LayerSpec("fc", "linear", shape2[1], shape2[0])
        w = w.reshape(shape2)
    scheme = get_scheme("unstructured")
    masks = scheme.masks_for_levels(w, layer)
    for level, mask in zip(scheme.levels(layer), masks, strict=True):
        mod = nn.Linear(1, 1)
        mod.weight = nn.Parameter(w.clone())
        prune.l1_unstructured(mod, "weight", amount=float(1.0 - level))
        assert torch.equal(mod.weight_mask.bool(), mask)
        assert mask.sum().item() / mask.numel() == pytest.approx(level)
    for lo, hi in zip(masks, masks[1:], strict=False):
        assert not (lo & ~hi).any()


def test_unstructured_levels_grid_and_small_layers():
    scheme = get_scheme("unstructured")
    big = LayerSpec("c", "conv", 64, 64, (3, 3))
    np.testing.assert_allclose(scheme.levels(big), np.arange(1, 21) / 20, atol=1 / big.params)
    small = LayerSpec("fc", "linear", 3, 2)
    np.testing.assert_allclose(scheme.levels(small), np.arange(1, 7) / 6)


@pytest.mark.parametrize("name", ["unstructured", "balanced"])
def test_ties_keep_exact_counts(name):
    layer = LayerSpec("c", "conv", 16, 8, (3, 3))
    w = torch.randint(-2, 3, layer.weight_shape).float()  # a handful of values: many ties
    scheme = get_scheme(name)
    for level, mask in zip(scheme.levels(layer), scheme.masks_for_levels(w, layer), strict=True):
        assert mask.sum().item() == round(level * layer.params)
        # Whatever was dropped is no larger than anything kept (per group for balanced).
        if name == "unstructured" and 0 < mask.sum() < mask.numel():
            assert w.abs()[mask].min() >= w.abs()[~mask].max()
