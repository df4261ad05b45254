"""hwprune runs / compare: the tables a user chooses a pruned model from."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents import SearchConfig, run_search
from agents.app.cli import _register_optional_commands, app

runner = CliRunner()
_register_optional_commands()


@pytest.fixture(scope="module")
def two_runs():
    runs = []
    for budget in (0.4, 0.7):
        config = SearchConfig(agent="random", episodes=2, budget=budget, experiment="test-runs")
        runs.append(run_search(config))
    return runs


def test_runs_lists_filters_and_sorts(two_runs):
    res = runner.invoke(
        app, ["runs", "--experiment", "test-runs", "--sort", "best/cost_ratio", "--asc"]
    )
    assert res.exit_code == 0, res.output
    cheap, dear = sorted(two_runs, key=lambda r: r.best.cost_ratio)
    assert res.output.index(cheap.run_id[:8]) < res.output.index(dear.run_id[:8])
    assert all(len(line) <= 80 for line in res.output.splitlines())
    res = runner.invoke(app, ["runs", "--experiment", "test-runs", "--scheme", "channel"])
    assert res.exit_code == 0 and "no runs match" in res.output
    res = runner.invoke(app, ["runs", "--experiment", "test-runs", "--json"])
    rows = json.loads(res.output)
    assert {r["run_id"] for r in rows} == {r.run_id for r in two_runs}
    assert all("best/test_accuracy" in r["metrics"] for r in rows)


def test_compare_puts_runs_side_by_side_by_id_prefix(two_runs):
    a, b = two_runs
    res = runner.invoke(app, ["compare", a.run_id[:8], b.run_id])
    assert res.exit_code == 0, res.output
    assert a.run_id[:8] in res.output and b.run_id[:8] in res.output
    for label in ("budget", "test acc", "cost", "uniform test", "latency_s"):
        assert label in res.output
    assert f"{a.best_test_accuracy:.4f}" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "--experiment", "no-such-experiment"], "no experiment 'no-such-experiment'"),
        (["runs", "--status", "DONE"], "unknown status 'DONE'"),
        (["compare", "ffffffff", "eeeeeeee"], "no MLflow run 'ffffffff'"),
        (["runs", "--sort", "no/such_metric"], "unknown metric 'no/such_metric' to sort by"),
        (["runs", "--sort", "best/acc"], "Did you mean 'best/test_accuracy'?"),
        (["runs", "--limit", "-1"], "--limit must be an integer >= 1, got -1"),
        (["compare", "ffffffff"], "compare needs two or more run ids, got 1"),
        (["runs", "--limit", "0"], "--limit must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_is_one_error_line(args, message):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], res.output


def _comparable(runs):
    return json.dumps([vars(r) for r in runs], sort_keys=True)  # NaN as NaN: equal


def test_sqlite_store_is_read_as_mlflow_reads_it(two_runs, monkeypatch):
    from tracking import query, sqlite_runs

    assert sqlite_runs.open_store() is not None  # the tests' store is a local SQLite file
    a, b = two_runs
    fast = query.list_runs(sort_by="best/cost_ratio", ascending=True, limit=5000)
    fast_some = query.list_runs(experiments=["test-runs"], limit=5000)
    fast_ids = query.get_runs([a.run_id, b.run_id[:8]])
    monkeypatch.setattr(query, "open_store", lambda: None)  # through MlflowClient
    slow = query.list_runs(sort_by="best/cost_ratio", ascending=True, limit=5000)
    assert _comparable(fast) == _comparable(slow)
    assert _comparable(fast_some) == _comparable(
        query.list_runs(experiments=["test-runs"], limit=5000)
    )
    assert _comparable(fast_ids) == _comparable(query.get_runs([a.run_id, b.run_id[:8]]))
    assert [r.run_id for r in fast_ids] == [a.run_id, b.run_id]
    assert not math.isnan(fast_ids[0].metric("best/test_accuracy"))


def test_sqlite_uris_the_fast_reader_takes(tmp_path):
    from tracking.sqlite_runs import sqlite_path

    db = tmp_path / "m.db"
    db.write_bytes(b"")
    assert sqlite_path(f"sqlite:///{db}") == db
    assert sqlite_path(f"sqlite:///{tmp_path}/missing.db") is None
    for uri in ("http://127.0.0.1:5000", f"file://{tmp_path}", "sqlite://", None):
        assert sqlite_path(uri) is None


ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str, cwd: Path, **env: str) -> str:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_and_compare_do_not_import_mlflow(two_runs):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import agents.app.cli as cli\n"
        "cli._register_optional_commands()\n"
        "for args in (['runs'], ['compare', sys.argv[1], sys.argv[2]]):\n"
        "    res = CliRunner().invoke(cli.app, args)\n"
        "    assert res.exit_code == 0, res.output\n"
        "    assert sys.argv[1][:8] in res.output, res.output\n"
        "print('mlflow' in sys.modules, 'torch' in sys.modules)\n"
    )
    a, b = two_runs
    environ = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, a.run_id, b.run_id], env=environ, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_default_store_is_the_one_mlflow_picks(tmp_path):
    """With no MLFLOW_TRACKING_URI, the light reader and MLflow name the same store."""
    code = (
        "from tracking.sqlite_runs import tracking_uri\n"
        "light = tracking_uri()\n"
        "import mlflow\n"
        "print(light == mlflow.get_tracking_uri() or (light, mlflow.get_tracking_uri()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ = {**env, "PYTHONPATH": str(ROOT)}
    for legacy in (False, True):
        if legacy:  # an old file store in ./mlruns: MLflow keeps it, the reader steps aside
            (tmp_path / "mlruns" / "1").mkdir(parents=True)
            (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("name: x\n")
            code = code.replace("light == ", "light is None or light == ")
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True,
            text=True,
        )  # fmt: skip
        assert out.stdout.strip() == "True", (out.stdout, out.stderr)
