"""The measured CPU model: table look-up, fitted fallback, profile-cpu on real layers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hwmodels import LayerSpec, get_hardware
from hwmodels.cpu import CpuModel, CpuParams, fit_fallback
from hwmodels.latency_table import parse_latency_table

CONV = LayerSpec("c", "conv", 16, 32, (3, 3), (1, 1), (1, 1), in_hw=(8, 8), out_hw=(8, 8))


def _table(path: Path) -> Path:
    entry = {
        "kind": "conv",
        "kernel": [3, 3],
        "stride": [1, 1],
        "padding": [1, 1],
        "groups": 1,
        "in_hw": [8, 8],
        "batch": 1,
        "out_channels": [16, 32],
        "in_channels": [8, 16],
        "latency_s": [[1e-5, 2e-5], [3e-5, 5e-5]],
    }
    data = {"device": "test", "channel_step": 16, "run_overhead_s": 1e-6, "entries": [entry]}
    path.write_text(json.dumps(data))
    return path


def test_measured_points_are_read_exactly_and_blended_between(tmp_path: Path) -> None:
    hw = get_hardware("cpu", latency_table=str(_table(tmp_path / "t.json")))
    assert hw.cost(CONV).latency_s == pytest.approx(5e-5)
    mask = np.ones(CONV.weight_shape, dtype=bool)
    mask[16:] = False  # 16 output channels: a measured row
    assert hw.cost(CONV, mask).latency_s == pytest.approx(2e-5)
    mask[:, 12:] = False  # and 12 inputs: halfway between 8 and 16
    assert hw.cost(CONV, mask).latency_s == pytest.approx(1.5e-5)
    assert hw.cost(CONV, np.zeros(CONV.weight_shape, dtype=bool)).latency_s == 0.0
    assert hw.structure() == {"channel_multiple": 16}  # the table's grid step
    assert hw.cost(CONV, mask).energy_j == pytest.approx(15.0 * 1.5e-5)


def test_unmeasured_shapes_fall_back_to_a_fit_of_the_table(tmp_path: Path) -> None:
    path = _table(tmp_path / "t.json")
    hw = get_hardware("cpu", latency_table=str(path))
    overhead, rate = fit_fallback(parse_latency_table(json.loads(path.read_text())))
    assert overhead >= 0 and rate > 0
    other = LayerSpec("o", "conv", 16, 32, (3, 3), (1, 1), (1, 1), in_hw=(9, 9), out_hw=(9, 9))
    lat = hw.cost(other).latency_s
    assert lat > hw.cost(CONV).latency_s * 0.5  # more pixels, same order
    no_table = CpuModel(CpuParams(latency_table=""))
    assert no_table.cost(CONV).latency_s == pytest.approx(5e-6 + CONV.macs / 4e9)
    assert no_table.structure() == {"channel_multiple": 8}


def test_default_preset_reads_the_shipped_table() -> None:
    hw = get_hardware("cpu")
    assert hw.params.latency_table.endswith("cpu.json")
    assert hw.table is not None and hw.table.grids
    assert hw.structure()["channel_multiple"] in (8, 16)


def test_bad_parameters_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        get_hardware("cpu", latency_table=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="unknown table_step"):
        get_hardware("cpu", table_step="cubic")


def test_profile_cpu_times_real_layers(tmp_path: Path) -> None:
    from agents.app.commands.profile_cpu import profile_cpu

    out = tmp_path / "table.json"
    table = profile_cpu(
        out,
        ("digits-cnn",),
        engine="torch",
        channel_step=16,
        repeats=1,
        warmup=0,
        min_round_s=1e-4,
    )
    assert table["channel_step"] == 16 and table["entries"]
    names = {n for e in table["entries"] for n in e["layers"]}
    assert "digits-cnn:features.0" in names
    hw = get_hardware("cpu", latency_table=str(out))
    assert hw.table is not None and len(hw.table.grids) == len(table["entries"])


def test_profile_cpu_bad_input_is_one_error_line(tmp_path: Path) -> None:
    import typer

    from agents.app.commands.profile_cpu import profile_cpu_command

    app = typer.Typer()
    app.command()(profile_cpu_command)
    result = CliRunner().invoke(app, ["--engine", "tvm", "--out", str(tmp_path / "t.json")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: unknown engine 'tvm'; valid: onnxruntime, torch"]
