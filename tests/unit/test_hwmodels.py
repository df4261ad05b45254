"""Contract tests every registered hardware preset must pass."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from hwmodels import COST_METRICS, INDEX_FORMATS, Cost, LayerSpec, get_hardware, list_hardware
from hwmodels.base import STRUCTURE_KEYS
from hwmodels.maskstats import block_nnz, col_any, row_any, segment_any
from hwmodels.zoo import random_mask

LAYERS = [
    LayerSpec("conv", "conv", 32, 48, (3, 3), (1, 1), (1, 1), 1, (14, 14), (14, 14)),
    LayerSpec("pw", "conv", 64, 40, (1, 1), (1, 1), (0, 0), 1, (7, 7), (7, 7)),
    LayerSpec("dw", "depthwise", 24, 24, (3, 3), (2, 2), (1, 1), 24, (16, 16), (8, 8)),
    LayerSpec("grp", "grouped", 32, 64, (3, 3), (1, 1), (1, 1), 4, (8, 8), (8, 8)),
    LayerSpec("fc", "linear", 200, 10),
]
PRESETS = list_hardware()


def _values(cost: Cost) -> list[float]:
    return [cost.get(m) for m in COST_METRICS]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_dense_mask_equals_none(preset: str, layer: LayerSpec) -> None:
    hw = get_hardware(preset)
    assert hw.cost(layer, np.ones(layer.weight_shape, bool)) == hw.cost(layer, None)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_costs_finite_and_non_negative(preset: str, layer: LayerSpec) -> None:
    hw = get_hardware(preset)
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.5, 0.9):
        values = _values(hw.cost(layer, random_mask(layer, density, rng)))
        assert all(math.isfinite(v) and v >= 0 for v in values), values
    dense = hw.cost(layer, None)
    assert dense.latency_s > 0 and dense.energy_j > 0 and dense.memory_bytes > 0


@pytest.mark.parametrize("preset", PRESETS)
def test_all_zero_mask_costs_at_most_dense(preset: str) -> None:
    hw = get_hardware(preset)
    for layer in LAYERS:
        empty = hw.cost(layer, np.zeros(layer.weight_shape, bool))
        dense = hw.cost(layer, None)
        for metric in ("cycles", "energy_j", "memory_bytes", "resources"):
            assert empty.get(metric) <= dense.get(metric), (layer.name, metric)


@pytest.mark.parametrize("preset", PRESETS)
def test_structure_keys_and_describe(preset: str) -> None:
    hw = get_hardware(preset)
    structure = hw.structure()
    assert set(structure) <= set(STRUCTURE_KEYS)
    assert all(isinstance(v, int) and v >= 1 for v in structure.values())
    described = hw.describe()
    assert described["name"] == preset
    json.dumps(described)


@pytest.mark.parametrize("preset", PRESETS)
def test_index_formats_when_supported(preset: str) -> None:
    hw = get_hardware(preset)
    names = {f.name for f in dataclasses.fields(hw.params)}
    if "index_format" not in names:
        pytest.skip(f"{preset} has no index metadata")
    layer = LAYERS[0]
    mask = random_mask(layer, 0.3, np.random.default_rng(1))
    memory = {}
    for fmt in INDEX_FORMATS:
        memory[fmt] = hw.with_params(index_format=fmt).cost(layer, mask).memory_bytes
    # Same values stored, so the metadata decides: 9-bit coordinates per non-zero beat
    # n-of-m's few bits, and a bit per weight beats a 3-bit pattern id per kernel.
    assert memory["coordinates"] > memory["n-of-m"]
    assert memory["bitmask"] > memory["pattern-id"]
    with pytest.raises(ValueError, match="unknown index format 'csr'.*bitmask"):
        hw.with_params(index_format="csr")


@pytest.mark.parametrize("preset", PRESETS)
def test_network_cost_accepts_none_and_checks_lengths(preset: str) -> None:
    hw = get_hardware(preset)
    total = hw.network_cost(LAYERS, None)
    assert total.latency_s > 0
    assert hw.network_cost(LAYERS, [None] * len(LAYERS)) == total
    with pytest.raises(ValueError, match="masks"):
        hw.network_cost(LAYERS, [None])


@pytest.mark.parametrize("preset", PRESETS)
def test_wrong_mask_shape_rejected(preset: str) -> None:
    hw = get_hardware(preset)
    with pytest.raises(ValueError, match="does not match weight shape"):
        hw.cost(LAYERS[0], np.ones((3, 3), bool))


def test_unknown_preset_and_parameter() -> None:
    with pytest.raises(KeyError, match="accel-kang-16"):
        get_hardware("accel-kang-61")
    with pytest.raises(ValueError, match="unknown parameter"):
        get_hardware(PRESETS[0], not_a_param=1)


def test_all_required_presets_registered() -> None:
    expected = {
        "accel-kang-8",
        "accel-kang-16",
        "systolic-32",
        "systolic-128",
        "reram-128",
        "reram-256",
        "gpu-jetson-tx2",
        "gpu-h100",
        "flops",
    }
    assert expected <= set(PRESETS)


def test_flops_counts_kept_macs_and_params() -> None:
    hw = get_hardware("flops")
    layer = LAYERS[0]  # 48 x 32 x 3 x 3 on 14 x 14 outputs
    mask = np.zeros(layer.weight_shape, dtype=bool)
    mask[:, 0, 0, 0] = True  # 48 weights
    cost = hw.cost(layer, mask)
    assert cost.cycles == 48 * 196 and cost.resources == 48 and cost.memory_bytes == 48 * 4
    assert hw.cost(layer).cycles == layer.macs


@pytest.mark.parametrize("g", [1, 2, 3, 4, 8, 16, 24, 32])
def test_block_nnz_matches_reference(g: int) -> None:
    rng = np.random.default_rng(g)
    for k in (5, 16, 33, 147):
        um = rng.random((6, k)) < 0.4
        nb = -(-k // g)
        reference = np.pad(um, ((0, 0), (0, nb * g - k))).reshape(6, nb, g).sum(axis=2)
        np.testing.assert_array_equal(block_nnz(um, g), reference)
        np.testing.assert_array_equal(segment_any(um, g), reference > 0)
        np.testing.assert_array_equal(row_any(um), um.any(axis=1))
        np.testing.assert_array_equal(col_any(um), um.any(axis=0))
