"""``search_policy``: the public search-only entry point (no MLflow run)."""

from __future__ import annotations

import mlflow
import pytest

from agents import FoundPolicy, search_policy
from envs import TaskSpec, make_task


def test_search_policy_returns_the_best_feasible_policy_without_a_run():
    runs = len(mlflow.search_runs(search_all_experiments=True))
    # The workload's own weights, whatever the search's seed (as run_search builds it).
    task = make_task(TaskSpec())
    found = search_policy(TaskSpec(), budget=0.6, agent="random", episodes=4, seed=3)
    assert isinstance(found, FoundPolicy) and len(found.records) == 4
    assert found.cost_ratio <= 0.6 + 1e-9
    assert found.cost_ratio == pytest.approx(task.cost_ratio(found.choice))
    assert found.accuracy == max(r.accuracy for r in found.records)
    assert len(mlflow.search_runs(search_all_experiments=True)) == runs
    again = search_policy(task, budget=0.6, agent="random", episodes=4, seed=3)
    assert again.choice == found.choice and again.accuracy == found.accuracy


def test_search_policy_refuses_a_budget_below_the_least_cost():
    with pytest.raises(ValueError, match="budget"):
        search_policy(TaskSpec(), budget=0.001, agent="random", episodes=2)
