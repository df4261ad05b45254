"""Sweeps on a local Ray: child runs under one parent, a killed worker's trial resumed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from agents.app.cli import _register_optional_commands, app
from agents.app.sweep import (
    PARENT_TAG,
    TAG_ATTEMPTS,
    TAG_KIND,
    TAG_TRIAL,
    TAG_WORKER,
    SweepSpec,
    run_sweep,
)

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


def test_a_sweep_with_an_unwritable_state_dir_fails_before_any_run(monkeypatch):
    monkeypatch.setenv("HWPRUNE_STATE_DIR", "/proc/hwprune-state")
    before = len(mlflow.search_runs(search_all_experiments=True))
    out = runner.invoke(app, ["sweep", "--agent", "random", "--episodes", "2", "--no-progress"])
    assert out.exit_code == 2, out.output
    assert "error: cannot write state directory (HWPRUNE_STATE_DIR)" in out.output
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_a_sweep_file_gives_the_grid_and_flags_override_it(tmp_path):
    from agents.app.commands.sweep import build_spec, load_sweep_file

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


# --- issue 26: a killed sweep driver, resumed ----------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess that runs this checkout (Ray workers inherit it)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _sweep_runs(experiment: str):
    """(parent run, {trial name: child run}) of the one sweep in ``experiment``."""
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, {}
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(TAG_KIND) == "sweep"]
    children = {r.data.tags[TAG_TRIAL]: r for r in runs if r.data.tags.get(TAG_KIND) == "search"}
    return (parents[0] if parents else None), children


@pytest.mark.slow
def test_a_sweep_whose_driver_is_killed_resumes_with_every_child_finished_once(tmp_path):
    """kill -9 of `hwprune sweep` with one trial done, one part-way and one not started:
    `sweep --resume` keeps the done one, resumes the started one from its journal, runs
    the last, and the sweep run ends FINISHED with each child FINISHED once."""
    from tracking.journal import read_records

    states = tmp_path / "state"
    env = _cli_env(HWPRUNE_STATE_DIR=str(states))
    episodes = 40
    args = ["sweep", "--agent", "random", "--episodes", str(episodes), "--budget", "0.4,0.5,0.6",
            "--num-cpus", "1", "--experiment", "sweep-killed", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "agents.app.cli", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        started = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            parent, children = _sweep_runs("sweep-killed")
            done = [n for n, r in children.items() if r.info.status == "FINISHED"]
            running = [
                (n, r) for n, r in children.items()
                if r.info.status == "RUNNING"
                and len(list(read_records(states / r.info.run_id / "journal.jsonl"))) >= 3
            ]  # fmt: skip
            if done and running:
                started = running[0]
                break
            time.sleep(0.2)
        assert started is not None, "the sweep never had a trial done and one running"
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as `kill -9 PID` does
        proc.wait()
        # The trial's Ray worker would stop by itself a little later; stop it now, so that
        # the trial is surely part-way (the wait for such a worker is tested below).
        worker = started[1].data.tags.get(TAG_WORKER, "").rpartition(":")[2]
        if worker.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(worker), signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # Ray's processes of the killed driver
    parent, children = _sweep_runs("sweep-killed")
    assert parent.info.status == "RUNNING"
    statuses = sorted(r.info.status for r in children.values())
    assert "FINISHED" in statuses and statuses != ["FINISHED"] * 3, statuses
    before_done = {n: r.info.run_id for n, r in children.items() if r.info.status == "FINISHED"}
    partial = started[1].info.run_id
    kept = len(list(read_records(states / partial / "journal.jsonl")))
    assert 3 <= kept < episodes

    out = subprocess.run(
        [sys.executable, "-m", "agents.app.cli", "sweep", "--resume", parent.info.run_id,
         "--num-cpus", "1", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert "Traceback" not in out.stdout and "3/3 runs complete" in out.stdout
    parent, children = _sweep_runs("sweep-killed")
    client = mlflow.tracking.MlflowClient()
    assert parent.info.status == "FINISHED"
    assert sorted(children) == ["budget=0.4", "budget=0.5", "budget=0.6"]  # one child each
    for name, run in children.items():
        assert run.info.status == "FINISHED", name
        assert _episode_steps(client, run.info.run_id) == list(range(episodes)), name
        assert run.data.tags[PARENT_TAG] == parent.info.run_id
    for name, run_id in before_done.items():  # not run again
        assert children[name].info.run_id == run_id
        assert children[name].data.tags[TAG_ATTEMPTS] == "1"
    resumed = client.get_run(partial)
    assert resumed.data.metrics["search/resumed_at_episode"] >= kept
    assert parent.data.metrics["sweep/complete"] == 3


def test_resume_waits_for_a_stopped_drivers_worker_then_refuses_if_it_lingers():
    """A worker of the killed driver that still runs a trial must stop before the trial is
    run again: two processes never write one run."""
    import socket

    from agents.app.sweep import _wait_for_workers
    from tracking import sweep_runs

    client = mlflow.tracking.MlflowClient()
    exp = mlflow.set_experiment("sweep-worker-wait").experiment_id
    run_id = client.create_run(exp).info.run_id
    code = "import sys, time; time.sleep(float(sys.argv[1]))"
    worker = subprocess.Popen([sys.executable, "-c", code, "1.5", "trial_task"])
    sweep_runs.set_tag(run_id, TAG_WORKER, f"{socket.gethostname()}:{worker.pid}")
    t0 = time.monotonic()
    _wait_for_workers({"t": run_id}, timeout=60)  # returns once it has exited
    assert worker.poll() is not None and time.monotonic() - t0 < 30
    lingering = subprocess.Popen([sys.executable, "-c", code, "60", "trial_task"])
    try:
        sweep_runs.set_tag(run_id, TAG_WORKER, f"{socket.gethostname()}:{lingering.pid}")
        with pytest.raises(
            ValueError, match=f"trial t is still running in process {lingering.pid}"
        ):
            _wait_for_workers({"t": run_id}, timeout=1)
    finally:
        lingering.kill()
        lingering.wait()
    _wait_for_workers({"t": run_id}, timeout=1)


def test_sweep_resume_refuses_what_it_cannot_continue_in_one_line():
    from tracking import sweep_runs

    client = mlflow.tracking.MlflowClient()
    exp = mlflow.set_experiment("sweep-resume-refusals").experiment_id
    finished = sweep_runs.create_parent_run(exp, "sweep-done", {TAG_KIND: "sweep"})
    sweep_runs.finish_run(finished, "FINISHED")
    search = client.create_run(exp).info.run_id
    for args, message in (
        ([finished], f"sweep run {finished!r} is FINISHED: nothing to resume"),
        ([search], f"run {search!r} is not a sweep run"),
        (["0123abcd"], "no MLflow run '0123abcd'"),
        ([finished, "--budget", "0.3"], "--resume continues a sweep with its own grid"),
        ([finished, "--num-cpus", "100000"], "--num-cpus must be in [1, "),
    ):
        out = runner.invoke(app, ["sweep", "--resume", *args, "--no-progress"])
        assert out.exit_code == 2, out.output
        lines = [line for line in out.output.splitlines() if line.strip()]
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], out.output
        assert message in lines[-1], lines[-1]
    assert client.get_run(finished).info.status == "FINISHED"
