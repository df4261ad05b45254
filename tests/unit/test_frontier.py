"""The budget-conditioned agent and the accuracy-versus-cost front."""

from __future__ import annotations

import json

import mlflow
import pytest

from agents.app.frontier import frontier_points, run_frontier
from agents.app.search import SearchConfig
from agents.recorder import EpisodeRecorder
from envs import LayerPruneEnv
from tests.conftest import MagnitudeProxy, fast_agent, tiny_task

RANGE = (0.4, 0.8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", ["td3", "ppo"])
def test_budget_conditioned_policy_within_budget(name: str) -> None:
    task = tiny_task()
    proxy = MagnitudeProxy(task.workload)
    env = LayerPruneEnv(task, proxy, budget=RANGE[1], budget_range=RANGE)
    agent = fast_agent(name)
    recorder = EpisodeRecorder()
    agent.search([lambda: env], episodes=40, recorder=recorder, seed=0)
    budgets = {round(r.budget, 6) for r in recorder.history}
    assert len(budgets) > 10  # episodes really drew their budgets from the range
    assert all(RANGE[0] <= b <= RANGE[1] for b in budgets)
    grid = [0.4, 0.5, 0.6, 0.7, 0.8]
    for b in grid:
        info = agent.policy_choice(env, budget=b)
        assert info["budget"] == pytest.approx(b)
        assert info["cost_ratio"] <= b + 1e-9
    front = frontier_points(agent, env, recorder, grid)
    assert [p.budget for p in front] == grid
    assert all(p.cost_ratio <= p.budget + 1e-9 for p in front)
    # The front takes the better of the policy and the episodes, so it never falls below.
    for p in front:
        assert p.accuracy >= (p.policy_accuracy or 0.0)
        assert p.accuracy >= (p.episode_accuracy or 0.0)
    accs = [p.accuracy for p in front]
    assert accs == sorted(accs)  # a larger budget never loses the smaller one's policies


def test_front_settings_are_checked_when_the_config_is_built() -> None:
    with pytest.raises(ValueError, match="0 < LOW < HIGH <= 1"):
        SearchConfig(budgets=(0.8, 0.4))
    with pytest.raises(ValueError, match="points must be an integer >= 2"):
        SearchConfig(budgets=(0.4, 0.8), points=1)
    with pytest.raises(ValueError, match="needs config.budgets"):
        run_frontier(SearchConfig())


@pytest.mark.slow
def test_run_frontier_logs_front(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end through MLflow, with the tiny task standing in for a named workload."""
    task = tiny_task()
    monkeypatch.setattr(SearchConfig, "build_task", lambda self: task)
    monkeypatch.setattr(
        SearchConfig,
        "build_env",
        lambda self, task, **_: LayerPruneEnv(
            task, MagnitudeProxy(task.workload), budget_range=self.budgets
        ),
    )
    config = SearchConfig(
        agent="ddpg",
        episodes=30,
        agent_params={"warmup_episodes": 5},
        experiment="front-test",
        budgets=RANGE,
        points=3,
    )
    result = run_frontier(config)
    assert result.episodes == 30
    assert len(result.points) == 3
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(result.run_id, "front/accuracy")
    assert [m.step for m in history] == [0, 1, 2]
    path = client.download_artifacts(result.run_id, "front.json")
    with open(path) as fh:
        front = json.load(fh)
    assert [p["budget"] for p in front["points"]] == pytest.approx([0.4, 0.6, 0.8])
    names = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert "plots/front.png" in names


@pytest.mark.slow
def test_front_run_from_the_cli_exports_every_point_and_never_falls_below_uniform(tmp_path):
    from typer.testing import CliRunner

    from agents.app.cli import _register_optional_commands, app
    from pruning.export import read_manifest

    _register_optional_commands()
    runner = CliRunner()
    out = tmp_path / "front"
    res = runner.invoke(
        app,
        ["search", "--budgets", "0.4:0.8", "--points", "2", "--agent", "random",
         "--episodes", "6", "--experiment", "front-cli", "--export", str(out), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    run_id = res.output.split("MLflow run id:")[1].split()[0]
    assert sorted(p.name for p in out.iterdir()) == ["b0.400", "b0.800"]
    client = mlflow.tracking.MlflowClient()
    front = {m.step: m.value for m in client.get_metric_history(run_id, "front/accuracy")}
    uniform = {m.step: m.value for m in client.get_metric_history(run_id, "uniform/accuracy")}
    assert all(front[i] >= uniform[i] for i in uniform)
    tests = client.get_metric_history(run_id, "front/test_accuracy")
    assert len(tests) == 2 and all(0.0 < m.value <= 1.0 for m in tests)
    res = runner.invoke(app, ["export", run_id, "--budget", "0.5", "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "x")["policy"]["budget"] == pytest.approx(0.4)
    res = runner.invoke(app, ["export", run_id, "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "pass --budget B" in res.output
    res = runner.invoke(app, ["export", run_id, "--budget", "0.3", "--out", str(tmp_path / "z")])
    assert res.exit_code == 2 and "no point of the front within budget 0.3" in res.output
