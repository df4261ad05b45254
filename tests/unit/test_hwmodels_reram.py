"""ReRAM crossbars: MNSIM counts on VGG-16, the three pruning grains by hand, monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwmodels import LayerSpec, get_hardware
from hwmodels.reram import ReramCrossbar, ReramParams
from hwmodels.zoo import random_mask, vgg16_layers

# 4x4 crossbars, one 1-bit weight per cell, no differential pair: one physical crossbar
# per logical tile, one input slice per read.
TINY = ReramParams(xb_rows=4, xb_cols=4, weight_bits=1, bits_per_cell=1, differential=False,
                   act_bits=1, cols_per_adc=1)  # fmt: skip


def _mnsim(layer: LayerSpec, rows: int, cols: int, weight_bits: int, cell_bits: int) -> int:
    k2 = layer.kernel[0] * layer.kernel[1]
    cin_per_xb = min(rows // k2, layer.in_channels)
    cout_per_xb = min(layer.out_channels, cols)
    return (
        math.ceil(layer.in_channels / cin_per_xb)
        * math.ceil(layer.out_channels / cout_per_xb)
        * math.ceil(weight_bits / cell_bits)
        * 2
    )


def test_vgg16_dense_crossbars_follow_mnsim() -> None:
    hw = get_hardware("reram-128")
    layers = vgg16_layers(224)
    counts = [hw.cost(layer).resources for layer in layers]
    assert counts == [_mnsim(layer, 128, 128, 8, 2) for layer in layers]
    # By hand: conv1_1 3->64: 1 x 1 x 4 slices x 2 = 8; conv1_2 64->64: ceil(64/14) = 5 -> 40;
    # conv5 512->512: ceil(512/14) * ceil(512/128) * 8 = 37 * 4 * 8 = 1184;
    # fc6 25088->4096: 196 * 32 * 8 = 50176.
    assert counts[:2] == [8, 40] and counts[12] == 1184 and counts[13] == 50176
    assert hw.network_cost(layers).resources == sum(counts)
    hw256 = get_hardware("reram-256")
    assert [hw256.cost(layer).resources for layer in layers] == [
        _mnsim(layer, 256, 256, 8, 2) for layer in layers
    ]


def _grain_mask() -> tuple[LayerSpec, np.ndarray]:
    # K = 8 on 4 rows (2 row blocks), 6 outputs on 4 columns (2 column blocks): 4 tiles.
    layer = LayerSpec("fc", "linear", 8, 6)
    mask = np.zeros((6, 8), dtype=bool)
    mask[0, 0] = mask[5, 1] = True  # row block 0: outputs 0 and 5
    mask[1:5, 4:8] = np.eye(4, dtype=bool)  # row block 1: outputs 1-4 ...
    mask[5, 7] = True  # ... and 5
    return layer, mask


def test_grains_by_hand() -> None:
    layer, mask = _grain_mask()
    hw = ReramCrossbar(TINY)
    assert hw.cost(layer).resources == 4
    # Crossbar grain: every one of the 4 tiles holds a weight.
    assert hw.with_params(grain="crossbar").cost(layer, mask).resources == 4
    # Column grain: row block 0 keeps 2 columns -> 1 crossbar; block 1 keeps 5 -> 2.
    column = hw.with_params(grain="column").cost(layer, mask)
    assert column.resources == 3
    assert column.energy_j < hw.with_params(grain="crossbar").cost(layer, mask).energy_j
    # Channel grain: 6 outputs, inputs {0, 1, 4, 5, 6, 7} -> 2 x 2 tiles.
    assert hw.with_params(grain="channel").cost(layer, mask).resources == 4
    # Inputs {0, 1, 6, 7} (one row block); outputs 1 and 2 lose their only weights, 4
    # outputs remain (one column block): a single tile.
    mask[:, 4:6] = False
    assert hw.with_params(grain="channel").cost(layer, mask).resources == 1
    assert hw.with_params(grain="crossbar").cost(layer, mask).resources == 4


def test_adc_conversions_drive_energy() -> None:
    # One output pixel, one input slice, no cell/DAC/shift-add energy: energy = 7
    # conversions (2 + 5 surviving columns) x ADC energy (power / rate) + buffer.
    layer, mask = _grain_mask()
    params = TINY.__class__(**{**TINY.__dict__, "cell_read_pj": 0.0, "dac_pj": 0.0,
                               "shift_add_pj": 0.0, "adc_power_w": 1e-3})  # fmt: skip
    hw = ReramCrossbar(params)
    buffer_pj = 1 * (8 + 6) * 1 * 5.0 / 32  # Horowitz SRAM per 32 bits
    assert hw.cost(layer, mask).energy_j == pytest.approx((7 * 1.0 + buffer_pj) * 1e-12)


@pytest.mark.parametrize("grain", ["crossbar", "column", "channel"])
def test_zeroing_blocks_never_adds_crossbars(grain: str) -> None:
    layer = LayerSpec("c", "conv", 40, 150, (3, 3), in_hw=(8, 8), out_hw=(8, 8))
    hw = get_hardware("reram-128", grain=grain)
    rng = np.random.default_rng(0)
    mask = random_mask(layer, 0.05, rng)
    um = mask.reshape(150, -1)
    previous = hw.cost(layer, mask)
    for _ in range(12):
        r0, c0 = rng.integers(0, um.shape[1]), rng.integers(0, 150)
        um[c0 : c0 + rng.integers(1, 60), r0 : r0 + rng.integers(1, 200)] = False
        now = hw.cost(layer, mask)
        for metric in ("resources", "area_mm2", "energy_j", "latency_s"):
            assert now.get(metric) <= previous.get(metric), metric
        previous = now
    um[:] = False
    assert hw.cost(layer, mask).resources == 0


def test_column_recombination_never_needs_more_than_crossbar_grain() -> None:
    layer = LayerSpec("c", "conv", 64, 300, (3, 3), in_hw=(4, 4), out_hw=(4, 4))
    rng = np.random.default_rng(1)
    hw = get_hardware("reram-128")
    for density in (0.001, 0.01, 0.1):
        mask = random_mask(layer, density, rng)
        column = hw.with_params(grain="column").cost(layer, mask).resources
        assert column <= hw.with_params(grain="crossbar").cost(layer, mask).resources


def test_grouped_layer_maps_each_group() -> None:
    # Depthwise 3x3 on 32 channels: 32 groups, each 9 rows x 1 column -> 32 tiles x 8.
    layer = LayerSpec("dw", "depthwise", 32, 32, (3, 3), groups=32, in_hw=(8, 8), out_hw=(8, 8))
    assert get_hardware("reram-128").cost(layer).resources == 32 * 8


def test_pipelined_network_latency() -> None:
    layers = vgg16_layers(32, classifier=False)
    seq = get_hardware("reram-128").network_cost(layers)
    pipe = get_hardware("reram-128", schedule="pipelined").network_cost(layers)
    stages = [get_hardware("reram-128").cost(layer).latency_s for layer in layers]
    assert max(stages) < pipe.latency_s < seq.latency_s == pytest.approx(sum(stages))
    assert pipe.energy_j == seq.energy_j and pipe.resources == seq.resources


def test_bad_parameters_named() -> None:
    with pytest.raises(ValueError, match="unknown grain 'row'.*crossbar, column, channel"):
        get_hardware("reram-128", grain="row")
    with pytest.raises(ValueError, match="unknown schedule 'async'"):
        get_hardware("reram-128", schedule="async")
    assert get_hardware("reram-256").structure() == {"crossbar_size": 256}
