"""Kernel-level schemes: IKR regular shapes and PCNN pattern dictionaries."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import LayerSpec
from pruning import get_scheme
from pruning.schemes.ikr import ikr_shapes


def conv_layer(cout: int, cin: int, kh: int, kw: int | None = None) -> LayerSpec:
    return LayerSpec("l", "conv", cin, cout, (kh, kw or kh))


def random_weight(layer: LayerSpec, seed: int) -> torch.Tensor:
    return torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))


def test_ikr_shape_set_for_3x3():
    shapes = ikr_shapes(3, 3)
    assert {n: len(s) for n, s in shapes.items()} == {1: 9, 3: 8, 4: 4, 5: 2, 6: 4, 9: 1}
    for n, group in shapes.items():
        assert group.shape[1] == 9 and (group.sum(1) == n).all()
        assert len({tuple(row) for row in group}) == len(group)
    plus = np.array([0, 1, 0, 1, 1, 1, 0, 1, 0], dtype=bool)
    assert any(np.array_equal(plus, row) for row in shapes[5])


@settings(max_examples=30, deadline=None)
@given(
    cout=st.integers(1, 5),
    cin=st.integers(1, 5),
    k=st.sampled_from([2, 3, 5]),
    seed=st.integers(0, 2**16),
)
def test_ikr_masks_use_best_allowed_shape(cout, cin, k, seed):
    layer = conv_layer(cout, cin, k)
    scheme = get_scheme("ikr")
    w = random_weight(layer, seed)
    table = ikr_shapes(k, k)
    np.testing.assert_allclose(scheme.levels(layer), np.array(sorted(table)) / (k * k))
    absw = w.abs().reshape(-1, k * k).numpy()
    for n, mask in zip(sorted(table), scheme.masks_for_levels(w, layer), strict=True):
        kernels = mask.reshape(-1, k * k).numpy()
        allowed = {tuple(row) for row in table[n]}
        for row, mag in zip(kernels, absw, strict=True):
            assert tuple(row) in allowed
            best = max(float(mag[np.array(s)].sum()) for s in allowed)
            assert float(mag[row].sum()) == pytest.approx(best, rel=1e-6)


def test_ikr_does_not_apply_to_pointwise_or_non_square():
    scheme = get_scheme("ikr")
    for layer in (
        LayerSpec("fc", "linear", 10, 4),
        conv_layer(4, 4, 1),
        conv_layer(4, 4, 1, 3),
    ):
        np.testing.assert_array_equal(scheme.levels(layer), [1.0])
        assert scheme.mask(torch.randn(layer.weight_shape), 0.2, layer).all()


def _top_pattern(row: np.ndarray, n: int) -> tuple[int, ...]:
    order = np.argsort(-row, kind="stable")[:n]
    return tuple(sorted(order.tolist()))


@settings(max_examples=30, deadline=None)
@given(
    cout=st.integers(1, 8),
    cin=st.integers(1, 8),
    shape=st.sampled_from([(3, 3), (2, 2), (1, 3), (5, 5)]),
    count=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_pattern_invariants_and_dictionary(cout, cin, shape, count, seed):
    layer = conv_layer(cout, cin, *shape)
    size = shape[0] * shape[1]
    scheme = get_scheme("pattern", pattern_count=count)
    w = random_weight(layer, seed)
    np.testing.assert_allclose(scheme.levels(layer), np.arange(1, size + 1) / size)
    absw = w.abs().reshape(-1, size).numpy()
    for n, mask in zip(range(1, size + 1), scheme.masks_for_levels(w, layer), strict=True):
        kernels = mask.reshape(-1, size).numpy()
        assert (kernels.sum(1) == n).all(), "every kernel keeps exactly n"
        used = {tuple(np.flatnonzero(row)) for row in kernels}
        assert len(used) <= count
        # Brute force: the dictionary holds the most frequent top-n patterns.
        freq = Counter(_top_pattern(row, n) for row in absw)
        dictionary = {tuple(np.flatnonzero(p)) for p in scheme.dictionary(w, layer, n)}
        assert used <= dictionary and len(dictionary) == min(count, len(freq))
        least_taken = min(freq[p] for p in dictionary)
        assert all(c <= least_taken for p, c in freq.items() if p not in dictionary)
        # Each kernel takes the dictionary pattern keeping the most magnitude.
        for row, mag in zip(kernels, absw, strict=True):
            best = max(float(mag[list(p)].sum()) for p in dictionary)
            assert float(mag[row].sum()) == pytest.approx(best, rel=1e-6)


def test_pattern_with_enough_patterns_is_per_kernel_top_n():
    layer = conv_layer(6, 4, 3)
    w = random_weight(layer, 3)
    mask = get_scheme("pattern", pattern_count=10_000).mask(w, 4 / 9, layer, exact=True)
    absw = w.abs().reshape(-1, 9)
    top = absw.topk(4, dim=1).indices
    want = torch.zeros_like(absw, dtype=torch.bool).scatter_(1, top, True)
    assert torch.equal(mask.reshape(-1, 9), want)


def test_pattern_large_kernel_and_pointwise():
    scheme = get_scheme("pattern", pattern_count=4)
    big = conv_layer(3, 2, 11)  # 121 positions: counted without int64 codes
    mask = scheme.mask(random_weight(big, 0), 0.5, big)
    kernels = mask.reshape(-1, 121)
    assert kernels.sum(1).eq(60).all() and len(torch.unique(kernels, dim=0)) <= 4
    lin = LayerSpec("fc", "linear", 10, 4)
    np.testing.assert_array_equal(scheme.levels(lin), [1.0])
    with pytest.raises(ValueError, match="pattern_count"):
        get_scheme("pattern", pattern_count=0)
