"""GPU model: tiles and waves by hand, the channel-count cliff, measured lookup tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwmodels import LayerSpec, get_hardware
from hwmodels.gpu import GpuModel, GpuParams
from hwmodels.latency_table import load_latency_table, parse_latency_table
from hwmodels.zoo import random_mask

# One 64x64 tile, 2 SMs x 1 block, 64 FMA per cycle at 1 GHz, no memory or launch time.
SIMPLE = GpuParams(
    n_sm=2,
    clock_hz=1e9,
    fma_per_sm_cycle=64.0,
    mem_bw_bytes_s=1e18,
    launch_overhead_s=0.0,
    k_tile=8,
    tiles=((64, 64, 1, 1.0),),
    channel_multiple=1,
)
CONV = LayerSpec("c", "conv", 64, 64, (3, 3), (1, 1), (1, 1), 1, (56, 56), (56, 56))


def _keep_out(layer: LayerSpec, channels: int) -> np.ndarray:
    mask = np.zeros(layer.weight_shape, dtype=bool)
    mask[:channels] = True
    return mask


def test_tiles_and_waves_by_hand() -> None:
    # M = 70, N = 100, K = 16: 2 x 2 tiles on 2 SMs = 2 waves of 64*64*16/64 = 1024 cycles.
    layer = LayerSpec("fc", "linear", 16, 100, out_hw=(70, 1), in_hw=(70, 1))
    hw = GpuModel(SIMPLE)
    assert hw.cost(layer).latency_s == pytest.approx(2048e-9)
    assert hw.cost(layer).cycles == pytest.approx(2048)
    # 64 output channels left: 2 tiles, one wave.
    assert hw.cost(layer, _keep_out(layer, 64)).latency_s == pytest.approx(1024e-9)
    # 65 left: still 2 column tiles -> no gain (tile quantisation).
    assert hw.cost(layer, _keep_out(layer, 65)).latency_s == pytest.approx(2048e-9)
    # Scattered zeros remove no channel: no speedup.
    rng = np.random.default_rng(0)
    assert hw.cost(layer, random_mask(layer, 0.5, rng)).latency_s == hw.cost(layer).latency_s


def test_removed_input_channels_shrink_k() -> None:
    # K = 16 -> 8 when half of the inputs are read by no kept weight.
    layer = LayerSpec("fc", "linear", 16, 64, out_hw=(64, 1), in_hw=(64, 1))
    mask = np.ones(layer.weight_shape, dtype=bool)
    mask[:, 8:] = False
    hw = GpuModel(SIMPLE)
    assert hw.kept_channels(layer, mask) == (64, 8)
    assert hw.cost(layer, mask).latency_s == pytest.approx(hw.cost(layer).latency_s / 2)


def test_jetson_cliff_fewer_channels_slower() -> None:
    hw = get_hardware("gpu-jetson-tx2")
    dense = hw.cost(CONV).latency_s
    assert hw.cost(CONV, _keep_out(CONV, 60)).latency_s > 1.5 * dense  # misaligned: cliff
    assert hw.cost(CONV, _keep_out(CONV, 56)).latency_s <= dense  # aligned: no cliff
    padded = hw.with_params(misaligned="pad")
    assert padded.cost(CONV, _keep_out(CONV, 60)).latency_s == pytest.approx(dense)
    assert hw.structure() == {"channel_multiple": 8}


def test_latency_is_a_staircase() -> None:
    hw = get_hardware("gpu-h100")
    aligned = [hw.cost(CONV, _keep_out(CONV, c)).latency_s for c in range(8, 65, 8)]
    assert len(set(np.round(aligned, 15))) < len(aligned)  # flat steps, not a line
    assert all(a <= b for a, b in zip(aligned, aligned[1:], strict=False))


def test_memory_bound_layer_follows_roofline() -> None:
    # A depthwise layer does ~nothing per byte: its latency is bytes / bandwidth + launch.
    layer = LayerSpec("dw", "depthwise", 256, 256, (3, 3), (1, 1), (1, 1), 256, (56, 56), (56, 56))
    hw = get_hardware("gpu-h100")
    p = hw.params
    elements = 256 * 56 * 56 * 2 + 256 * 9
    expected = elements * p.bytes_per_element / p.mem_bw_bytes_s + p.launch_overhead_s
    assert hw.cost(layer).latency_s >= expected - 1e-12
    compute, _, _ = hw.compute_s(layer, 1, 1)
    assert hw.cost(layer).latency_s == pytest.approx(
        max(compute, expected - p.launch_overhead_s) + p.launch_overhead_s
    )


def _table(path: Path) -> Path:
    entry = {
        "kind": "conv", "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "groups": 1,
        "in_hw": [56, 56], "batch": 1,
        "out_channels": [16, 32, 64], "in_channels": [32, 64],
        "latency_s": [[1e-4, 2e-4], [3e-4, 4e-4], [5e-4, 6e-4]],
    }  # fmt: skip
    path.write_text(json.dumps({"device": "test", "entries": [entry]}))
    return path


def test_lookup_table_staircase(tmp_path: Path) -> None:
    hw = get_hardware("gpu-jetson-tx2", latency_table=str(_table(tmp_path / "t.json")))
    assert hw.cost(CONV).latency_s == 6e-4  # (64 out, 64 in) measured
    # 48 out channels: step down to the 32 measurement, never a line between 32 and 64.
    assert hw.cost(CONV, _keep_out(CONV, 48)).latency_s == 4e-4
    assert hw.cost(CONV, _keep_out(CONV, 8)).latency_s == 2e-4  # below the grid: smallest
    upper = hw.with_params(table_step="upper")
    assert upper.cost(CONV, _keep_out(CONV, 48)).latency_s == 6e-4
    # A shape the table does not cover falls back to the analytic model.
    other = LayerSpec("o", "conv", 64, 64, (1, 1), in_hw=(56, 56), out_hw=(56, 56))
    assert hw.cost(other).latency_s == get_hardware("gpu-jetson-tx2").cost(other).latency_s


def test_lookup_table_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_latency_table(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="'entries' list"):
        parse_latency_table({"rows": []})
    bad = {"kind": "conv", "kernel": [1, 1], "stride": [1, 1], "padding": [0, 0], "groups": 1,
           "in_hw": [4, 4], "batch": 1, "out_channels": [8, 16], "in_channels": [8],
           "latency_s": [[1.0]]}  # fmt: skip
    with pytest.raises(ValueError, match="expected \\(2, 1\\)"):
        parse_latency_table({"entries": [bad]})
    with pytest.raises(ValueError, match="unknown table_step 'nearest'.*lower, upper"):
        get_hardware("gpu-h100", table_step="nearest")
    with pytest.raises(ValueError, match="unknown misaligned mode 'skip'.*slow, pad"):
        get_hardware("gpu-h100", misaligned="skip")
