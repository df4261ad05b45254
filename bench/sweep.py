"""Sweep throughput on Ray and the tracking server's write throughput.

Measures, on this machine:
- one sweep (digits-cnn, the random agent, ``--trials`` budgets x ``--episodes``
  episodes) on a local Ray of 1 and then 2 CPUs (one trial per CPU): wall time from the
  sweep's first run to its last, trials per minute and episodes per second, and the
  2-worker / 1-worker speed-up; Ray's own start-up is reported apart;
- the tracking server (``mlflow server`` on PostgreSQL, started here on free loopback
  ports) under N concurrent writers, N in ``--writers``: each writer is a process that
  logs ``--writer-episodes`` episodes of a search run the way a search does (the five
  ``episode/*`` metrics per episode through ``tracking.SearchRun``, the journal mirrored
  as an artifact), but flushing after every episode (the worst case; searches batch 5 s
  of episodes per request): episodes and metric points written per second, and a check
  that every point is in the store.

Without PostgreSQL the sweeps log to a local SQLite file and the server part is skipped.
Prints a table and writes JSON to bench/results/sweep.json.
Usage: python -m bench.sweep [--quick]; ``--report`` prints that file's tables, running nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent

RESULTS = _HERE / "results"


def sweep_throughput(workers: int, trials: int, episodes: int) -> dict:
    """One sweep on a fresh local Ray of ``workers`` CPUs."""
    import ray

    from agents.app.sweep import SweepSpec, run_sweep

    budgets = [round(0.4 + 0.5 * i / max(trials - 1, 1), 3) for i in range(trials)]
    spec = SweepSpec.from_dict(
        {
            "model": "digits-cnn",
            "agent": "random",
            "episodes": episodes,
            "experiment": f"bench-sweep-{workers}",
            "grid": {"budget": budgets},
        }
    )
    t0 = time.perf_counter()
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
        _node_ip_address="127.0.0.1",
    )
    ray_start = time.perf_counter() - t0
    try:
        result = run_sweep(spec, poll_s=0.2)
    finally:
        ray.shutdown()
    assert result.ok, result.rows
    wall = result.wall_s
    return {
        "workers": workers,
        "trials": trials,
        "episodes_per_trial": episodes,
        "ray_start_s": ray_start,
        "wall_s": wall,
        "trials_per_min": 60 * trials / wall,
        "episodes_per_s": trials * episodes / wall,
        "complete": sum(bool(r["complete"]) for r in result.rows),
    }


def _writer(uri: str, experiment: str, episodes: int, index: int, queue: mp.Queue) -> None:
    """One concurrent writer: a search run's episodes, flushed one by one."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from tracking import search_run

    t0 = time.perf_counter()
    with search_run(experiment, run_name=f"writer-{index}") as run:
        run.flush_every = 1
        for ep in range(episodes):
            metrics = {"reward": 0.5, "accuracy": 0.9, "cost_ratio": 0.5, "density": 0.4}
            metrics["budget"] = 0.5
            run.journal.append({"episode": ep, **metrics})
            run.write_episode(ep, metrics)
        run_id = run.run_id
    queue.put((run_id, time.perf_counter() - t0))


def server_writes(uri: str, writers: int, episodes: int) -> dict:
    """``writers`` processes writing at once; every point checked in the store."""
    import mlflow

    from agents.app.sweep import prepare_experiment

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    experiment = f"bench-writers-{writers}-{time.time_ns()}"
    prepare_experiment(experiment)
    procs = [
        ctx.Process(target=_writer, args=(uri, experiment, episodes, i, queue))
        for i in range(writers)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    done = []
    for _ in procs:
        done.append(queue.get(timeout=600))
        if any(p.exitcode not in (None, 0) for p in procs):
            raise RuntimeError("a writer process failed")
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    client = mlflow.tracking.MlflowClient(uri)
    present = all(
        sorted(m.step for m in client.get_metric_history(run_id, f"episode/{k}"))
        == list(range(episodes))
        for run_id, _ in done
        for k in ("reward", "accuracy", "cost_ratio", "density")
    )
    busy = max(t for _, t in done)  # from the first write of a writer to its last
    return {
        "writers": writers,
        "episodes_per_writer": episodes,
        "wall_s_incl_start": wall,
        "write_s": busy,
        "episodes_per_s": writers * episodes / busy,
        "metric_points_per_s": 5 * writers * episodes / busy,
        "requests_per_s": 2 * writers * episodes / busy,  # log_batch + journal artifact
        "all_present": present,
    }


def table(doc: dict) -> str:
    """The printed tables of a results dict (``main``'s or ``sweep.json``'s)."""
    server = doc["store"] != "sqlite"
    lines = [
        f"\n## sweep throughput, local Ray ({'PostgreSQL server' if server else 'SQLite'})",
        f"{'workers':>7} {'trials':>6} {'ep/trial':>8} {'ray start s':>11} {'wall s':>7} "
        f"{'trials/min':>10} {'episodes/s':>10} {'complete':>8}",
    ]
    for s in doc["sweeps"]:
        lines.append(
            f"{s['workers']:>7} {s['trials']:>6} {s['episodes_per_trial']:>8} "
            f"{s['ray_start_s']:>11.1f} {s['wall_s']:>7.1f} {s['trials_per_min']:>10.2f} "
            f"{s['episodes_per_s']:>10.2f} {s['complete']:>8}"
        )
    lines.append(f"speed-up 2 workers / 1 worker: {doc['speedup_2_vs_1']:.2f}x")
    if doc["server_writes"]:
        lines.append(
            "\n## tracking server writes (mlflow server + PostgreSQL, one flush per episode)"
        )
        lines.append(
            f"{'writers':>7} {'episodes':>8} {'write s':>7} {'episodes/s':>10} "
            f"{'points/s':>8} {'requests/s':>10} {'all present':>11}"
        )
        for w in doc["server_writes"]:
            lines.append(
                f"{w['writers']:>7} {w['writers'] * w['episodes_per_writer']:>8} "
                f"{w['write_s']:>7.1f} {w['episodes_per_s']:>10.1f} "
                f"{w['metric_points_per_s']:>8.1f} {w['requests_per_s']:>10.1f} "
                f"{str(w['all_present']):>11}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and episodes")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--writers", default="1,2,4")
    parser.add_argument("--writer-episodes", type=int, default=100)
    parser.add_argument("--report", action="store_true", help="print the stored table, run nothing")
    args = parser.parse_args()
    if args.report:
        print(table(json.loads((RESULTS / "sweep.json").read_text())))
        return
    if args.quick:
        args.trials, args.episodes, args.writer_episodes = 2, 10, 30

    import mlflow

    from envs import get_workload
    from tracking.server import find_postgres, free_port, start_server, stop_server

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    get_workload("digits-cnn")  # trained and cached before anything is timed
    work = Path(tempfile.mkdtemp(prefix="hwprune-bench-sweep-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as 'postgres' under root
    os.environ["HWPRUNE_STATE_DIR"] = str(work / "state")
    server = None
    if find_postgres() is not None:
        server = start_server(work / "server", port=free_port(), workers=2)
        uri = server.tracking_uri
    else:
        uri = f"sqlite:///{work}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        sweeps = [sweep_throughput(w, args.trials, args.episodes) for w in (1, 2)]
        writes = []
        if server is not None:
            writes = [
                server_writes(uri, int(n), args.writer_episodes) for n in args.writers.split(",")
            ]
    finally:
        os.chdir(cwd)
        if server is not None:
            stop_server(server.root)
        shutil.rmtree(work, ignore_errors=True)

    speedup = sweeps[0]["wall_s"] / sweeps[1]["wall_s"]
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "store": "mlflow server on PostgreSQL" if server else "sqlite",
        "sweeps": sweeps,
        "speedup_2_vs_1": speedup,
        "server_writes": writes,
        "settings": vars(args),
    }
    print(table(out))
    (RESULTS / "sweep.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'sweep.json'}")


if __name__ == "__main__":
    main()
