"""Checks that need no trained weights run before a workload is trained or loaded."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agents import SearchConfig
from agents.app.cli import app
from agents.app.search import PRECHECK_SLACK, check_budget_before_training
from envs import TaskSpec

runner = CliRunner()


def test_an_infeasible_budget_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "cache"))
    res = runner.invoke(
        app,
        ["search", "--scheme", "channel", "--hardware", "gpu-jetson-tx2", "--budget", "0.3",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "below the least achievable cost ratio, about 0.8966" in " ".join(res.output.split())
    assert not (tmp_path / "cache" / "workloads").exists()  # nothing was trained


def test_a_borderline_budget_is_left_to_the_exact_check():
    """Within the slack, trained weights may still reach it: no early refusal."""
    config = SearchConfig(task=TaskSpec(scheme="channel", hardware="gpu-jetson-tx2"), budget=0.89)
    check_budget_before_training(config)  # 0.89 < 0.8966, but within PRECHECK_SLACK
    assert 0.89 > 0.8966 * (1 - PRECHECK_SLACK)
    with pytest.raises(ValueError, match="about 0.8966"):
        check_budget_before_training(
            SearchConfig(task=TaskSpec(scheme="channel", hardware="gpu-jetson-tx2"), budget=0.5)
        )
