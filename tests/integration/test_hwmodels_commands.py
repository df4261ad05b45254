"""The `cost` and `profile-gpu` commands (agents/app/commands) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from agents.app.commands.cost import compute_costs, cost_command, load_policy
from agents.app.commands.profile_gpu import ProfileShape, channel_counts, profile_gpu
from hwmodels import LayerSpec, get_hardware


def test_compute_costs_dense_and_pruned(stub_cost_workload: None) -> None:
    result = compute_costs(model="tiny", hardware="flops", scheme="unstructured", density=0.5)
    assert [row["name"] for row in result["layers"]] == ["0", "2", "4"]
    total = result["total"]
    assert total["dense"]["cycles"] == (3 * 9 * 16 + 16 * 9 * 32) * 64 + 2048 * 10
    assert total["pruned"]["cycles"] == pytest.approx(total["dense"]["cycles"] / 2, rel=0.02)
    for row in result["layers"]:
        assert row["density"] == pytest.approx(0.5, abs=0.02)


def test_policy_overrides_density(stub_cost_workload: None, tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"densities": {"2.weight": 0.25}}))
    policy = load_policy(path)
    assert policy == {"2": 0.25}
    result = compute_costs(model="tiny", hardware="accel-kang-16", scheme="balanced", policy=policy)
    densities = {row["name"]: row["density"] for row in result["layers"]}
    assert densities["0"] == 1.0 and densities["4"] == 1.0
    assert densities["2"] == pytest.approx(0.25)
    with pytest.raises(KeyError, match="unknown layer\\(s\\) 9.*layers: 0, 2, 4"):
        compute_costs(model="tiny", hardware="flops", scheme="balanced", policy={"9": 0.5})


def test_cost_errors_name_choices(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="hardware preset 'reram-12'"):
        compute_costs(model="tiny", hardware="reram-12")
    with pytest.raises(ValueError, match="need a --scheme"):
        compute_costs(model="tiny", hardware="flops", density=0.5)
    with pytest.raises(ValueError, match="outside \\(0, 1\\]"):
        compute_costs(model="tiny", hardware="flops", scheme="balanced", density=1.5)
    bad = tmp_path / "p.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="no 'densities'"):
        load_policy(bad)


def test_cost_command_prints_table_and_json(stub_cost_workload: None) -> None:
    app = typer.Typer()
    app.command()(cost_command)
    app.command("noop")(lambda: None)  # two commands: the runner needs the command name
    runner = CliRunner()
    out = runner.invoke(app, ["cost-command", "--hardware", "reram-128", "--scheme",
                              "unstructured", "--density", "0.5", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["hardware"]["name"] == "reram-128" and len(data["layers"]) == 3
    out = runner.invoke(app, ["cost-command", "--hardware", "gpu-h100"])
    assert out.exit_code == 0, out.output
    assert "network totals" in out.output and "latency ms" in out.output
    out = runner.invoke(app, ["cost-command", "--hardware", "nope"])
    assert out.exit_code == 2 and "unknown hardware preset 'nope'" in out.output


def test_profile_gpu_table_calibrates_the_model(tmp_path: Path) -> None:
    shape = ProfileShape(in_channels=8, out_channels=16, kernel=3, in_hw=8)
    table = profile_gpu(tmp_path / "t.json", "cpu", shapes=(shape,), channel_step=8,
                        in_channel_points=2, repeats=2, warmup=1)  # fmt: skip
    entry = table["entries"][0]
    assert entry["out_channels"] == [8, 12, 16] and entry["in_channels"] == [4, 8]
    assert all(t > 0 for row in entry["latency_s"] for t in row)
    layer = LayerSpec("c", "conv", 8, 16, (3, 3), padding=(1, 1), in_hw=(8, 8), out_hw=(8, 8))
    hw = get_hardware("gpu-jetson-tx2", latency_table=str(tmp_path / "t.json"))
    assert hw.cost(layer).latency_s == entry["latency_s"][2][1]
    assert channel_counts(64, 16) == [16, 32, 48, 60, 64]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            profile_gpu(tmp_path / "x.json", "cuda")


def test_cost_policy_takes_the_scheme_and_hardware_from_the_file(stub_cost_workload, tmp_path):
    policy = tmp_path / "best_policy.json"
    policy.write_text(
        json.dumps(
            {
                "scheme": "balanced",
                "hardware": "accel-kang-8",
                "densities": {name: 0.5 for name in stub_cost_workload},
            }
        )
    )
    app = typer.Typer()
    app.command("cost")(cost_command)
    app.command("noop")(lambda: None)  # two commands: the runner needs the command name
    runner = CliRunner()
    res = runner.invoke(app, ["cost", "--policy", str(policy), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["scheme"]["name"] == "balanced"
    assert result["hardware"]["name"] == "accel-kang-8"
    res = runner.invoke(app, ["cost", "--policy", str(policy), "--hardware", "flops", "--json"])
    assert json.loads(res.output)["hardware"]["name"] == "flops"  # a flag still wins


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "batch must be an integer >= 1, got 0"),
        (["--batch", "100000"], "batch must be an integer in [1, 4096]"),
        (["--out", "/proc/x/table.json"], "cannot write --out"),
    ],
)
def test_profile_gpu_refuses_bad_input_before_timing_and_writes_nothing(tmp_path, args, message):
    from typer.testing import CliRunner

    from agents.app.cli import _register_optional_commands, app

    _register_optional_commands()
    out = tmp_path / "t.json"
    res = CliRunner().invoke(app, ["profile-gpu", "--device", "cpu", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "100000"], "threads must be an integer in [1, "),
        (["--batch", "100000"], "batch must be an integer in [1, 4096]"),
        (["--out", "/proc/x/table.json"], "cannot write --out"),
    ],
)
def test_profile_cpu_refuses_bad_input_before_timing(tmp_path, args, message):
    from typer.testing import CliRunner

    from agents.app.cli import _register_optional_commands, app

    _register_optional_commands()
    out = tmp_path / "t.json"
    res = CliRunner().invoke(app, ["profile-cpu", "--engine", "torch", "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()
