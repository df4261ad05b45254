"""Channel scheme on single layers: aligned counts, best channels, nesting, hardware default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import LayerSpec
from pruning import get_scheme


@settings(max_examples=40, deadline=None)
@given(
    cout=st.integers(1, 70),
    cin=st.integers(1, 6),
    k=st.sampled_from([1, 3]),
    round_to=st.integers(1, 16),
    norm=st.sampled_from(["l1", "l2"]),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_channel_invariants(cout, cin, k, round_to, norm, density, seed):
    layer = LayerSpec("c", "conv", cin, cout, (k, k))
    scheme = get_scheme("channel", round_to=round_to, norm=norm)
    w = torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))
    rows = w.reshape(cout, -1)
    score = rows.abs().sum(1) if norm == "l1" else rows.pow(2).sum(1).sqrt()
    levels = scheme.levels(layer)
    masks = scheme.masks_for_levels(w, layer)
    for level, mask in zip(levels, masks, strict=True):
        kept_rows = mask.reshape(cout, -1)
        assert torch.equal(kept_rows.all(1), kept_rows.any(1)), "whole channels only"
        c = int(kept_rows.all(1).sum())
        assert c == round(level * cout) and (c % round_to == 0 or c == cout)
        # The kept channels are the c with the largest norms.
        assert score[kept_rows.all(1)].sum().item() == pytest.approx(
            score.topk(c).values.sum().item(), rel=1e-5
        )
    for lo, hi in zip(masks, masks[1:], strict=False):
        assert not (lo & ~hi).any()
    got = scheme.mask(w, density, layer)
    level = scheme.snap(density, layer)
    assert got.sum().item() == round(level * cout) * layer.fan_in
    assert level <= density + 1e-9 or level == levels[0]


def test_channel_levels_and_small_layers():
    scheme = get_scheme("channel", channel_multiple=8)
    np.testing.assert_allclose(
        scheme.levels(LayerSpec("c", "conv", 3, 20, (3, 3))), [8 / 20, 16 / 20, 1.0]
    )
    np.testing.assert_array_equal(scheme.levels(LayerSpec("fc", "linear", 10, 8)), [1.0])
    assert get_scheme("channel").round_to == 8
    with pytest.raises(ValueError, match="norm"):
        get_scheme("channel", norm="l3")
