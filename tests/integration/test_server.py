"""The shared tracking server: mlflow server on PostgreSQL, started on free loopback ports.

Concurrent searches keep every episode metric, and a search whose server goes down and
comes back mid-run loses nothing (the trial resumes from its journal).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
import time

import mlflow
import pytest

from agents import SearchConfig, run_search
from tracking.server import (
    ServerError,
    find_postgres,
    free_port,
    restart_mlflow,
    start_server,
    stop_mlflow,
    stop_server,
)

if find_postgres() is None:
    pytest.skip(
        "PostgreSQL server programs (initdb, pg_ctl) are not installed "
        "(Debian: apt-get install postgresql)",
        allow_module_level=True,
    )

EPISODE_KEYS = ("reward", "accuracy", "cost_ratio", "density")


@pytest.fixture(scope="module")
def server():
    """PostgreSQL + mlflow server in a fresh folder, on free ports; MLflow points at it."""
    root = tempfile.mkdtemp(prefix="hwprune-server-")
    os.chmod(root, 0o755)  # PostgreSQL runs as 'postgres' when the tests run as root
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "HWPRUNE_STATE_DIR")}
    try:
        info = start_server(root, port=free_port(), workers=1)
    except ServerError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start PostgreSQL here: {exc}")
    os.environ["MLFLOW_TRACKING_URI"] = info.tracking_uri
    os.environ["HWPRUNE_STATE_DIR"] = os.path.join(root, "state")
    mlflow.set_tracking_uri(info.tracking_uri)
    try:
        yield info
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


def _complete(client, run_id: str, episodes: int) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in EPISODE_KEYS:
        steps = sorted(m.step for m in client.get_metric_history(run_id, f"episode/{key}"))
        assert steps == list(range(episodes)), (run_id, key, steps)


def _search_process(settings: dict, queue) -> None:
    """One search in a child process: its run id, or its error, into ``queue``."""
    try:
        queue.put(run_search(SearchConfig.from_dict(settings)).run_id)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        queue.put(f"error: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_concurrent_searches_keep_every_episode(server, digits):
    """N searches as N processes (as Ray workers run them), all writing at once.

    Spawned, not forked: a child forked after torch's intra-op thread pool has run
    deadlocks in its first parallel kernel (it did in CI, where earlier tests in this
    worker had used torch), so each child imports for a few seconds instead.
    """
    from agents.app.sweep import prepare_experiment

    n, episodes = 3, 6
    # As a sweep's driver does: searches starting together on a new experiment race to
    # tag it (tracking.search_run), which PostgreSQL refuses for all but one.
    prepare_experiment("server-concurrent")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_search_process,
            args=(
                {
                    "model": "digits-cnn",
                    "agent": "random",
                    "episodes": episodes,
                    "budget": 0.4 + 0.1 * i,
                    "seed": i,
                    "experiment": "server-concurrent",
                },
                queue,
            ),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    # Generous: three searches on two cores share them with the rest of the suite.
    run_ids = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert not [r for r in run_ids if r.startswith("error:")], run_ids
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name("server-concurrent").experiment_id
    assert sorted(r.info.run_id for r in client.search_runs([exp])) == sorted(run_ids)
    for run_id in run_ids:
        _complete(client, run_id, episodes)
        assert client.get_run(run_id).data.params["task.model"] == "digits-cnn"
        assert "pruned_model" in {a.path for a in client.list_artifacts(run_id)}


@pytest.mark.slow
def test_a_server_restart_mid_search_loses_nothing(server, digits, monkeypatch):
    from agents.app.sweep import PARENT_TAG, TrialSpec, run_trial

    # No HTTP retries: the outage reaches the search (MLflow would otherwise wait it out).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    episodes = 8
    config = SearchConfig.from_dict(
        {
            "model": "digits-cnn",
            "agent": "random",
            "episodes": episodes,
            "experiment": "server-restart",
        }
    )
    client = mlflow.tracking.MlflowClient()
    exp = mlflow.set_experiment("server-restart").experiment_id
    parent = client.create_run(exp, run_name="sweep").info.run_id
    child = client.create_run(exp, tags={PARENT_TAG: parent}).info.run_id
    restarter: list[threading.Thread] = []

    def outage(done: int) -> None:
        if done == 2 and not restarter:  # down from episode 2 until it has restarted
            stop_mlflow(server.root)
            t = threading.Thread(target=lambda: (time.sleep(1.0), restart_mlflow(server.root)))
            t.start()
            restarter.append(t)

    trial = TrialSpec(
        name="restart",
        config=config.as_dict(),
        run_id=child,
        parent_run_id=parent,
        tracking_uri=server.tracking_uri,
        store_wait_s=120,
    )
    summary = run_trial(trial, outage)
    restarter[0].join()
    assert summary["store_failures"] >= 1  # the search saw the outage and resumed
    assert summary["complete"], summary
    _complete(client, child, episodes)
    assert client.get_run(child).data.tags[PARENT_TAG] == parent
