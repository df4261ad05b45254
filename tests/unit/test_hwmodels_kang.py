"""The Kang sparse PE array: hand-computed cycles and the published balanced-vs-unstructured gap."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import LayerSpec, get_hardware
from hwmodels.kang import KangAccelerator, KangParams
from hwmodels.zoo import balanced_mask, random_mask, vgg16_layers

SMALL = KangParams(group_size=4, n_pe=2, multipliers_per_pe=2)


def _fc(out: int, inp: int, tokens: int = 1) -> LayerSpec:
    return LayerSpec("fc", "linear", inp, out, out_hw=(tokens, 1), in_hw=(tokens, 1))


def test_cycles_by_hand() -> None:
    # 4 output channels on 2 PEs -> 2 passes; K = 8 -> 2 blocks of g = 4; M = 2.
    layer = _fc(4, 8, tokens=3)
    mask = np.array(
        [
            [1, 1, 1, 0, 1, 0, 0, 0],  # pass 1, PE 0: nnz per block 3, 1
            [0, 1, 0, 0, 0, 0, 0, 0],  # pass 1, PE 1: 1, 0
            [1, 1, 1, 1, 1, 1, 0, 0],  # pass 2, PE 0: 4, 2
            [0, 0, 0, 0, 1, 1, 1, 1],  # pass 2, PE 1: 0, 4
        ],
        dtype=bool,
    )
    hw = KangAccelerator(SMALL)
    # pass 1: max(2, 1) + max(1, 0) = 3; pass 2: max(2, 0) + max(1, 2) = 4 -> 7 per token.
    assert hw.cost(layer, mask).cycles == 7 * 3
    # Dense: 2 passes x 2 blocks x ceil(4 / 2) = 8 per token.
    assert hw.cost(layer, None).cycles == 8 * 3
    # Gating spends the dense cycles but the sparse MAC energy.
    gated = hw.with_params(sparsity="gate")
    assert gated.cost(layer, mask).cycles == 8 * 3
    assert gated.cost(layer, mask).energy_j < gated.cost(layer, None).energy_j


def test_idle_pes_and_short_last_block() -> None:
    # 3 output channels on 2 PEs: the second pass has one idle PE. K = 6: blocks of 4, 2.
    layer = _fc(3, 6)
    mask = np.zeros((3, 6), dtype=bool)
    mask[2, :] = True  # only the third channel: pass 2 costs ceil(4/2) + ceil(2/2) = 3
    assert KangAccelerator(SMALL).cost(layer, mask).cycles == 3
    assert KangAccelerator(SMALL).cost(layer, None).cycles == 2 * (2 + 1)


def test_depthwise_runs_group_by_group() -> None:
    # 2 groups of 1 channel, K = 9 per group -> blocks 4, 4, 1 with M = 1: 9 cycles each.
    layer = LayerSpec("dw", "depthwise", 2, 2, (3, 3), groups=2, in_hw=(5, 5), out_hw=(5, 5))
    hw = KangAccelerator(KangParams(group_size=4, n_pe=4, multipliers_per_pe=1))
    assert hw.cost(layer, None).cycles == 2 * 9 * 25
    mask = np.zeros(layer.weight_shape, dtype=bool)
    mask[0, 0, 0, :] = True  # 3 weights in the first block of group 0 only
    assert hw.cost(layer, mask).cycles == 3 * 25


def test_dense_index_format_cannot_skip() -> None:
    layer = _fc(4, 8)
    mask = np.eye(4, 8, dtype=bool)
    hw = KangAccelerator(SMALL)
    assert hw.with_params(index_format="dense").cost(layer, mask).cycles == 8
    assert hw.cost(layer, mask).cycles < 8


def test_metadata_charged_in_memory() -> None:
    layer = _fc(4, 8)
    mask = np.eye(4, 8, dtype=bool)  # 4 non-zeros
    hw = KangAccelerator(SMALL)  # 16-bit weights, g = 4 -> 2 index bits per kept weight
    assert hw.cost(layer, mask).memory_bytes == (4 * 16 + 4 * 2) / 8
    assert (
        hw.with_params(index_format="bitmask").cost(layer, mask).memory_bytes == (4 * 16 + 32) / 8
    )
    assert hw.cost(layer, None).memory_bytes == 32 * 16 / 8  # dense needs no index
    more_meta = hw.with_params(index_format="coordinates").cost(layer, mask)
    assert more_meta.energy_j > hw.cost(layer, mask).energy_j


def test_fewer_weights_never_add_cycles() -> None:
    layer = LayerSpec("c", "conv", 16, 40, (3, 3), in_hw=(6, 6), out_hw=(4, 4))
    hw = get_hardware("accel-kang-16")
    rng = np.random.default_rng(3)
    mask = random_mask(layer, 0.6, rng)
    previous = hw.cost(layer, mask)
    for _ in range(4):
        mask &= random_mask(layer, 0.7, rng)
        now = hw.cost(layer, mask)
        assert now.cycles <= previous.cycles and now.energy_j <= previous.energy_j
        previous = now


@pytest.mark.parametrize("preset,group", [("accel-kang-16", 16), ("accel-kang-8", 8)])
def test_unstructured_about_twice_balanced_on_vgg(preset: str, group: int) -> None:
    # Kang's headline: at 25% density balanced pruning runs ~2x faster than unstructured.
    hw = get_hardware(preset)
    rng = np.random.default_rng(0)
    layers = [layer for layer in vgg16_layers(56, classifier=False) if layer.in_channels >= 64]
    ratios = []
    for layer in layers[:6]:
        balanced = balanced_mask(layer, group // 4, group, rng)
        unstructured = random_mask(layer, 0.25, rng)
        assert abs(unstructured.mean() - balanced.mean()) < 0.01
        ratios.append(hw.cost(layer, unstructured).cycles / hw.cost(layer, balanced).cycles)
        # Balanced at 25% with M = g/4 keeps every PE busy: a quarter of the dense cycles.
        assert hw.cost(layer, balanced).cycles == hw.cost(layer, None).cycles / 4
    assert min(ratios) > 1.6, ratios


def test_bad_parameters_named() -> None:
    with pytest.raises(ValueError, match="unknown sparsity mode 'drop'.*skip, gate"):
        get_hardware("accel-kang-16", sparsity="drop")
    with pytest.raises(ValueError, match="unknown energy table 'x'.*horowitz45"):
        get_hardware("accel-kang-16", energy_table="x")
    with pytest.raises(ValueError, match="n_pe must be >= 1"):
        get_hardware("accel-kang-16", n_pe=0)


def test_energy_tables_selectable() -> None:
    layer = _fc(64, 64)
    horowitz = get_hardware("accel-kang-16").cost(layer)
    eyeriss = get_hardware("accel-kang-16", energy_table="eyeriss", energy_unit_pj=2.0).cost(layer)
    assert horowitz.energy_j != eyeriss.energy_j
    assert horowitz.cycles == eyeriss.cycles
    assert get_hardware("accel-kang-16").structure() == {"group_size": 16, "pattern_count": 8}
