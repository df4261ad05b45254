"""Systolic array: SCALE-Sim fold cycles by hand, and what structure saves cycles."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import LayerSpec, get_hardware
from hwmodels.maskstats import MaskStats
from hwmodels.systolic import SystolicArray, SystolicParams, fold_cycles, parse_nm
from hwmodels.zoo import random_mask

ARRAY_4 = SystolicParams(rows=4, cols=4)


def _fc(out: int, inp: int, tokens: int) -> LayerSpec:
    return LayerSpec("fc", "linear", inp, out, out_hw=(tokens, 1), in_hw=(tokens, 1))


def test_weight_stationary_folds_by_hand() -> None:
    # K = 6 on 4 rows (2 folds), N = 5 on 4 columns (2 folds), M = 10. Every fold takes
    # the whole array (SCALE-Sim): 2*4 + 4 + 10 - 2 = 20 cycles; counted from 0: 4*20 - 1.
    layer = _fc(5, 6, tokens=10)
    assert SystolicArray(ARRAY_4).cost(layer).cycles == 79
    assert fold_cycles(np.array([6]), np.array([5]), np.array([10]), 4, 4)[0] == 79


def test_output_stationary_folds_by_hand() -> None:
    # M = 10 on rows (3 folds), N = 5 on columns (2 folds), K = 6 streamed: R + C + K - 2
    # = 12 per fold, 6 * 12 - 1 = 71.
    layer = _fc(5, 6, tokens=10)
    hw = SystolicArray(SystolicParams(rows=4, cols=4, dataflow="os"))
    assert hw.cost(layer).cycles == 71


def test_only_whole_channels_and_k_rows_save_cycles() -> None:
    layer = _fc(5, 6, tokens=10)
    hw = SystolicArray(ARRAY_4)
    scattered = np.ones((5, 6), dtype=bool)
    scattered[0, 0] = scattered[1, 3] = scattered[4, 5] = False
    assert hw.cost(layer, scattered).cycles == 79  # unstructured zeros are multiplied
    no_out4 = np.ones((5, 6), dtype=bool)
    no_out4[4] = False  # N = 4: one column fold, 2 folds of 20
    assert hw.cost(layer, no_out4).cycles == 39
    no_k45 = np.ones((5, 6), dtype=bool)
    no_k45[:, 4:] = False  # K = 4: one row fold, 2 folds of 20
    assert hw.cost(layer, no_k45).cycles == 39
    assert hw.cost(layer, np.zeros((5, 6), dtype=bool)).cycles == 0


def test_grouped_layer_sums_its_groups() -> None:
    # 2 groups, each a GEMM with K = 2, N = 2, M = 9 on a 4x4 array: one fold,
    # 2*4 + 4 + 9 - 2 - 1 = 18 (SCALE-Sim's depthwise layers: one GEMM per channel).
    layer = LayerSpec("g", "grouped", 4, 4, (1, 1), groups=2, in_hw=(3, 3), out_hw=(3, 3))
    hw = SystolicArray(ARRAY_4)
    assert hw.cost(layer).cycles == 2 * 18
    mask = np.ones(layer.weight_shape, dtype=bool)
    mask[2:] = False  # second group empty
    assert hw.cost(layer, mask).cycles == 18


def test_nm_mode_compresses_k_only_for_conforming_masks() -> None:
    layer = _fc(4, 8, tokens=10)
    hw = SystolicArray(SystolicParams(rows=4, cols=4, nm_sparsity="2:4", index_format="n-of-m"))
    # 2 of every 4 kept, rotating so that no K row is empty (that alone would save rows).
    eye = np.eye(4, dtype=bool)
    two_four = np.tile(eye | np.roll(eye, 1, axis=1), (1, 2))
    # K_eff = 4: one fold of 2*4 + 4 + 10 - 2 = 20, minus 1; dense K = 8: two folds.
    assert hw.cost(layer, two_four).cycles == 19
    assert hw.cost(layer).cycles == 39
    # 3 of 4 kept, a different zero per row so that no K row is empty.
    three_of_four = ~np.tile(eye, (1, 2))
    assert hw.cost(layer, three_of_four).cycles == 39
    assert SystolicArray(ARRAY_4).cost(layer, two_four).cycles == 39  # mode off
    assert hw.structure() == {"channel_multiple": 4, "group_size": 4}


def test_cycles_never_grow_when_pruning_more() -> None:
    layer = LayerSpec("c", "conv", 24, 40, (3, 3), in_hw=(6, 6), out_hw=(4, 4))
    rng = np.random.default_rng(0)
    for preset in ("systolic-32", "systolic-128"):
        hw = get_hardware(preset, dataflow="os")
        mask = np.ones(layer.weight_shape, dtype=bool)
        previous = hw.cost(layer, mask)
        for channel in rng.permutation(40)[:20]:
            mask[channel] = False
            now = hw.cost(layer, mask)
            assert now.cycles <= previous.cycles and now.energy_j <= previous.energy_j
            previous = now
        assert hw.cost(layer, random_mask(layer, 0.5, rng)).cycles == hw.cost(layer).cycles


def test_bad_parameters_named() -> None:
    with pytest.raises(ValueError, match="unknown dataflow 'is'.*ws, os"):
        get_hardware("systolic-32", dataflow="is")
    with pytest.raises(ValueError, match="n:m sparsity must look like"):
        parse_nm("2-4")
    with pytest.raises(ValueError, match="1 <= n < m"):
        get_hardware("systolic-32", nm_sparsity="4:4")
    assert parse_nm("off") is None


def test_nm_partial_last_block_holds_at_most_its_length() -> None:
    # K = 9 in 2:4: blocks of 4, 4 and 1 keep 2 + 2 + 1 = 5 rows (SCALE-Sim's count);
    # the kept positions rotate over the rows so that no row of K is empty.
    layer = _fc(4, 9, tokens=10)
    hw = SystolicArray(SystolicParams(rows=4, cols=4, nm_sparsity="2:4"))
    keep = (np.arange(9)[None, :] + np.arange(4)[:, None]) % 4 < 2
    k_eff, _ = hw.effective_gemm(MaskStats(layer, keep))
    assert k_eff.tolist() == [5]
