"""Sweeps on a local Ray: child runs under one parent, a killed worker's trial resumed."""

from __future__ import annotations

import os
import signal

import mlflow
import pytest
from typer.testing import CliRunner

from agents.cli import _register_optional_commands, app
from agents.sweep import PARENT_TAG, TAG_TRIAL, SweepSpec, run_sweep

ray = pytest.importorskip("ray")
runner = CliRunner()
_register_optional_commands()

TINY = {"model": "digits-cnn", "agent": "random", "scheme": "balanced"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (its start-up is the slow part)."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()


def _episode_steps(client, run_id: str, key: str = "episode/reward") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_two_trial_sweep_logs_children_table_and_plot(local_ray, digits):
    spec = SweepSpec.from_dict(
        {**TINY, "episodes": 3, "experiment": "sweep-test", "grid": {"budget": [0.4, 0.6]}}
    )
    result = run_sweep(spec, poll_s=0.2)
    assert result.ok, result.rows
    client = mlflow.tracking.MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("sweep-test").experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{result.run_id}'",
    )
    assert sorted(r.data.tags[TAG_TRIAL] for r in children) == ["budget=0.4", "budget=0.6"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert _episode_steps(client, child.info.run_id) == [0, 1, 2]
        assert child.data.metrics["best/cost_ratio"] <= float(child.data.params["budget"]) + 1e-9
    files = {a.path for a in client.list_artifacts(result.run_id, "sweep")}
    assert {"sweep/table.md", "sweep/results.json"} <= files
    assert [a.path for a in client.list_artifacts(result.run_id, "plots")] == [
        "plots/accuracy_vs_cost.png"
    ]
    assert [r["budget"] for r in result.table] == [0.4, 0.6]
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/complete"] == 2


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_resumes_from_its_journal(local_ray, digits):
    spec = SweepSpec.from_dict({**TINY, "episodes": 60, "experiment": "sweep-kill"})
    killed: list[int] = []

    def kill_once(state) -> None:
        p = state.progress.get("search", {})
        if not killed and not state.results and p.get("episodes", 0) >= 3:
            killed.append(p["pid"])
            os.kill(p["pid"], signal.SIGKILL)

    result = run_sweep(spec, on_update=kill_once, poll_s=0.05)
    assert killed, "the worker was never seen running"
    assert result.ok, result.rows
    (row,) = result.rows
    assert row["attempts"] == 2
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(row["run_id"])
    assert run.data.tags[PARENT_TAG] == result.run_id
    # Every episode once: the replayed ones were not logged twice.
    for key in ("episode/reward", "episode/accuracy", "episode/cost_ratio"):
        assert _episode_steps(client, row["run_id"], key) == list(range(60))
    assert run.data.metrics["search/resumed_at_episode"] >= 3


def test_bad_sweep_input_is_one_error_line_before_any_run():
    before = len(mlflow.search_runs(search_all_experiments=True))
    for args, message in (
        (["--scheme", "balanced,balancd"], "trial scheme=balancd"),
        (["--budget", "0.4,abc"], "--budget '0.4,abc' is not a comma-separated list"),
        (["--gpus-per-trial", "0.5"], "need --device cuda"),
        (["--budget", "0.01"], "below the least achievable cost ratio"),
        (["--num-cpus", "100000"], "--num-cpus must be in [1, "),
        (["--cpus-per-trial", "100000"], "cpus per trial 100000 is more than the local Ray's"),
        (["--episodes", "99999999999999999999"], "episodes must be an integer in [1, 1000000]"),
    ):
        out = runner.invoke(app, ["sweep", "--agent", "random", "--episodes", "2", *args])
        assert out.exit_code == 2, out.output
        assert message in out.output
        assert out.output.count("error:") == 1
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_a_sweep_file_gives_the_grid_and_flags_override_it(tmp_path):
    from agents.commands.sweep import build_spec, load_sweep_file

    path = tmp_path / "sweep.yml"
    path.write_text(
        "task: {model: digits-cnn}\nagent: random\nepisodes: 3\n"
        "grid: {budget: [0.4, 0.6], seed: [0, 1]}\n"
        "pairs: [[balanced, accel-kang-16], [channel, gpu-jetson-tx2]]\n"
        "resources: {cpus: 1}\n"
    )
    spec = build_spec(load_sweep_file(path), {"seed": "3"})
    names = [t.name for t in spec.trials()]
    assert len(names) == 4  # 2 pairs x 2 budgets, one seed from the flag
    assert names[0] == "scheme=balanced,hardware=accel-kang-16,budget=0.4"
    assert {t.config.seed for t in spec.trials()} == {3}
    with pytest.raises(ValueError, match="cannot sweep 'budgets'"):
        SweepSpec.from_dict({"grid": {"budgets": [[0.3, 0.5]]}})
