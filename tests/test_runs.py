"""hwprune runs / compare: the tables a user chooses a pruned model from."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agents import SearchConfig, run_search
from agents.cli import _register_optional_commands, app

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
        (["runs", "--limit", "-1"], "--limit must be an integer >= 1 (rows shown), got -1"),
        (["runs", "--limit", "0"], "--limit must be an integer >= 1 (rows shown), got 0"),
    ],
)
def test_bad_input_is_one_error_line(args, message):
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], res.output
