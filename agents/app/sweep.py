"""Sweeps: a grid of searches run as Ray tasks, each a child run of one MLflow sweep run.

A ``SweepSpec`` is a base of search settings (what every search shares) and a grid
(scheme x hardware x budget x seed, or any other setting), expanded into one validated
``SearchConfig`` per trial before anything runs. ``run_sweep`` then:

1. checks the tracking store and that every budget is achievable (one ``error:`` line,
   before any run is created);
2. creates the sweep's parent run and one child run per trial (status SCHEDULED, tag
   ``mlflow.parentRunId``), so the UI shows the whole sweep from the start;
3. runs every trial as a Ray task (``ray.init()`` here, or an existing cluster with
   ``address``) with its own CPUs and GPU fraction. A trial logs into its child run
   (``MLFLOW_RUN_ID``, which ``mlflow.start_run`` picks up) and
   - if its worker dies (killed, out of memory, node lost), Ray runs it again, and the
     new attempt resumes the child run from its journal (``load_resume`` +
     ``run_search(resume=...)``): the finished episodes are replayed, not re-evaluated;
   - if the tracking store fails (server restarted), the search goes on offline
     (``tracking.StoreFailure`` at its end), the trial waits for the store and resumes,
     which uploads the episodes the store lacks;
4. checks that every child run is FINISHED with every episode logged, and logs a table
   and a plot of accuracy against cost per (scheme, hardware) over the budgets into the
   parent run.

A sweep whose driver stopped (``kill -9``, a lost machine) leaves its parent RUNNING and
children SCHEDULED or part-way; ``resume_sweep`` (``hwprune sweep --resume RUN_ID``)
continues it from its own ``sweep.yaml``: FINISHED children stay, the others run again in
their own child runs (resuming from their journals), once the stopped driver's workers
have stopped (the ``hwprune.driver`` and ``hwprune.worker`` tags say where they ran).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from agents.app.search import SEARCH_FIELDS, SearchConfig, check_outputs
from envs import TASK_FIELDS
from tracking import run_status, sweep_runs
from tracking.sweep_runs import PARENT_TAG as PARENT_TAG  # the child runs' tag, re-exported
from tracking.sweep_runs import prepare_experiment

#: Settings a grid may vary (any search or task setting but a --budgets front's).
GRID_KEYS: tuple[str, ...] = tuple(
    k for k in (*TASK_FIELDS, *SEARCH_FIELDS) if k not in ("budgets", "points")
)
#: The grid's axes, in the order trial names show them.
AXIS_ORDER = ("model", "scheme", "hardware", "metric", "agent", "budget", "seed")
#: Tags on the runs of a sweep.
TAG_KIND = "hwprune.kind"
TAG_TRIAL = "hwprune.trial"
TAG_ATTEMPTS = "hwprune.attempts"


class Trial(NamedTuple):
    """One search of a sweep."""

    name: str
    config: SearchConfig
    settings: dict[str, Any]  # what a worker builds its SearchConfig from


@dataclass(frozen=True)
class SweepSpec:
    """A grid of searches and the resources of each, validated when built.

    Attributes:
        base: settings every search shares (``SearchConfig.from_dict`` keys, flat).
        grid: setting -> the values it takes; trials are the product of the axes.
        pairs: (scheme, hardware) pairs, instead of the product of two axes.
        cpus: CPUs reserved per trial (Ray ``num_cpus``); also the trial's torch
            threads unless ``threads`` is set in ``base``.
        gpus: GPU share per trial (Ray ``num_gpus``, e.g. 0.25), with ``device: cuda``.
        max_retries: times Ray reruns a trial whose worker died.
        store_retries: times a trial resumes after the tracking store failed.
    """

    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    pairs: Sequence[tuple[str, str]] = ()
    cpus: float = 1.0
    gpus: float = 0.0
    max_retries: int = 3
    store_retries: int = 3

    def __post_init__(self) -> None:
        self.trials(check_device=False)  # validates every trial's config

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any], *, where: str = "") -> SweepSpec:
        """From a mapping: search settings (flat or under ``task:``), ``grid:``,
        ``pairs:``, ``resources: {cpus, gpus}``, ``max_retries``, ``store_retries``."""
        values = dict(settings)
        grid = values.pop("grid", None) or {}
        pairs = values.pop("pairs", None) or []
        resources = values.pop("resources", None) or {}
        extra = {k: values.pop(k) for k in ("max_retries", "store_retries") if k in values}
        if not isinstance(grid, Mapping):
            raise ValueError(f"{where}grid must be a mapping of setting: [values], got {grid!r}")
        if not isinstance(resources, Mapping) or set(resources) - {"cpus", "gpus"}:
            raise ValueError(f"{where}resources must be a mapping with cpus and/or gpus")
        task = values.pop("task", None) or {}
        if not isinstance(task, Mapping):
            raise ValueError(f"{where}task must be a mapping of KEY: VALUE, got {task!r}")
        base = {**values, **task}
        try:
            return cls(
                base=base,
                grid={str(k): v for k, v in grid.items()},
                pairs=_check_pairs(pairs),
                cpus=resources.get("cpus", 1.0),
                gpus=resources.get("gpus", 0.0),
                **extra,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise type(exc)(f"{where}{exc.args[0] if exc.args else exc}") from None

    def axes(self) -> list[tuple[str, list[Any]]]:
        """The grid's axes (pairs as one axis ``scheme/hardware``), in display order."""
        out: list[tuple[str, list[Any]]] = []
        for key, values in self.grid.items():
            if key not in GRID_KEYS:
                raise ValueError(
                    f"cannot sweep {key!r}; a grid varies one of: {', '.join(GRID_KEYS)}"
                )
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                values = [values]
            if not values:
                raise ValueError(f"grid axis {key!r} has no values")
            out.append((key, list(dict.fromkeys(values))))  # duplicates once
        if self.pairs:
            clash = {"scheme", "hardware"} & set(self.grid)
            if clash:
                raise ValueError(
                    f"pairs fix scheme and hardware together; drop the grid axis "
                    f"{', '.join(sorted(clash))}"
                )
            out.append(("scheme/hardware", [tuple(p) for p in self.pairs]))
        rank = {k: i for i, k in enumerate(("model", "scheme", "scheme/hardware", *AXIS_ORDER))}
        return sorted(out, key=lambda kv: rank.get(kv[0], len(rank)))

    def trials(self, *, check_device: bool = True) -> list[Trial]:
        """Every trial: its name (``scheme=...,budget=...``), validated config and the
        settings a worker rebuilds it from.

        ``ValueError`` naming the trial for a bad value; ``budgets`` (a front search)
        cannot be swept: its runs cannot resume. ``check_device=False`` checks a
        ``device: cuda`` trial with ``device: cpu`` here (a driver without a GPU sending
        trials to GPU workers), and its threads and environments without this machine's
        CPU count (workers elsewhere check theirs); its settings keep what was asked for.
        """
        from agents.checks import check_int

        if "budgets" in self.base or "points" in self.base:
            raise ValueError("a sweep runs fixed-budget searches; drop budgets/points")
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, (int, float)) or self.cpus <= 0:
            raise ValueError(f"cpus per trial must be a number > 0, got {self.cpus!r}")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, (int, float)) or self.gpus < 0:
            raise ValueError(f"gpus per trial must be a number >= 0, got {self.gpus!r}")
        check_int("max_retries", self.max_retries, minimum=0)
        check_int("store_retries", self.store_retries, minimum=0)
        axes = self.axes()
        base = dict(self.base)
        if "threads" not in base:
            base["threads"] = max(1, int(self.cpus))
        out: list[Trial] = []
        for combo in itertools.product(*(values for _, values in axes)):
            settings = dict(base)
            parts = []
            for (key, _), value in zip(axes, combo, strict=True):
                if key == "scheme/hardware":
                    settings["scheme"], settings["hardware"] = value
                    parts.append(f"scheme={value[0]},hardware={value[1]}")
                else:
                    settings[key] = value
                    parts.append(f"{key}={value}")
            name = ",".join(parts) or "search"
            device = settings.get("device", "cpu")
            if self.gpus > 0 and device == "cpu":
                raise ValueError(f"trial {name}: gpus per trial need --device cuda (or auto)")
            here = (
                settings
                if check_device
                else {**settings, "device": "cpu", "threads": 1, "n_envs": 1}
            )
            try:
                config = SearchConfig.from_dict(here)
            except (KeyError, ValueError, FileNotFoundError) as exc:
                msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                raise type(exc)(f"trial {name}: {msg}") from None
            out.append(Trial(name, config, {**config.as_dict(), "device": device}))
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (the sweep run's ``sweep.yaml``); ``from_dict`` reads it back."""
        return {
            **dict(self.base),
            "grid": {k: list(v) for k, v in self.grid.items()},
            "pairs": [list(p) for p in self.pairs],
            "resources": {"cpus": self.cpus, "gpus": self.gpus},
            "max_retries": self.max_retries,
            "store_retries": self.store_retries,
        }


def _check_pairs(pairs: Any) -> list[tuple[str, str]]:
    if not isinstance(pairs, Sequence) or isinstance(pairs, str):
        raise ValueError(f"pairs must be a list of [scheme, hardware], got {pairs!r}")
    out = []
    for p in pairs:
        if isinstance(p, str) and ":" in p:
            p = p.split(":", 1)
        if not isinstance(p, Sequence) or isinstance(p, str) or len(p) != 2:
            raise ValueError(f"pair {p!r} is not [scheme, hardware] (or SCHEME:HARDWARE)")
        out.append((str(p[0]), str(p[1])))
    return out


# -- one trial, in a Ray worker (or in this process) -----------------------------------


@dataclass(frozen=True)
class TrialSpec:
    """What a worker needs to run one trial: plain data, shipped to Ray workers."""

    name: str
    config: dict[str, Any]
    run_id: str
    parent_run_id: str
    tracking_uri: str
    store_retries: int = 3
    store_wait_s: float = 300.0
    state_dir: str | None = None
    command: str | None = None


def run_trial(
    trial: TrialSpec,
    progress: Callable[[int], None] | None = None,
    *,
    attempt: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) one trial's search into its child run; return its summary.

    The child run tells what to do: FINISHED is done (its summary is read back); one
    holding a ``config.yaml`` was started by an earlier attempt and resumes from its
    journal; else the search starts in it. A tracking-store failure makes the trial wait
    for the store and resume, ``store_retries`` times at most. ``progress(n)`` gets the
    number of episodes finished by this attempt (replayed ones included).
    """
    from agents.app.search import SearchInterrupted, load_resume, run_search
    from tracking import STORE_ERRORS, StoreFailure

    os.environ["MLFLOW_TRACKING_URI"] = trial.tracking_uri
    sweep_runs.use_store(trial.tracking_uri)
    if trial.state_dir:
        os.environ["HWPRUNE_STATE_DIR"] = trial.state_dir
    sweep_runs.end_active_runs()  # a worker runs many tasks: start clean
    config = SearchConfig.from_dict(trial.config)
    _wait_for_store(trial.store_wait_s)
    tags = sweep_runs.read_run(trial.run_id).tags
    attempts = int(tags.get(TAG_ATTEMPTS, "0")) + 1 if attempt is None else attempt
    sweep_runs.set_tag(trial.run_id, TAG_ATTEMPTS, str(attempts))
    sweep_runs.set_tag(trial.run_id, TAG_WORKER, _here())
    started = time.monotonic()
    store_failures = 0
    done = 0

    def counted(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done)

    while True:
        done = 0
        try:
            if run_status(trial.run_id) == "FINISHED":
                break
            if sweep_runs.has_artifact(trial.run_id, "config.yaml"):
                _, state = load_resume(trial.run_id)
                run_search(config, command=trial.command, progress=counted, resume=state)
            else:
                with sweep_runs.active_run_id(trial.run_id):
                    run_search(config, command=trial.command, progress=counted)
            break
        except SearchInterrupted:
            raise
        except Exception as exc:
            if not isinstance(exc, (StoreFailure, *STORE_ERRORS)) and _store_up():
                _mark_failed(trial.run_id, exc)
                raise
            store_failures += 1
            if store_failures > trial.store_retries:
                raise RuntimeError(
                    f"trial {trial.name}: the tracking store failed {store_failures} times; "
                    f"last: {type(exc).__name__}: {exc}"
                ) from exc
            sweep_runs.end_active_runs("FAILED", stop_on_store_error=True)
            _wait_for_store(trial.store_wait_s)
    summary = trial_summary(trial.run_id, config)
    summary.update(
        name=trial.name,
        attempts=attempts,
        store_failures=store_failures,
        wall_s=time.monotonic() - started,
    )
    return summary


def _mark_failed(run_id: str, exc: BaseException) -> None:
    try:
        sweep_runs.set_tag(run_id, "hwprune.error", f"{type(exc).__name__}: {exc}"[:4000])
        if run_status(run_id) in ("RUNNING", "SCHEDULED"):
            sweep_runs.finish_run(run_id, "FAILED")
    except Exception:  # noqa: BLE001 - reporting the first error matters more
        pass


def _store_up() -> bool:
    from tracking import StoreError, check_store

    try:
        check_store()
    except StoreError:
        return False
    return True


def _wait_for_store(timeout: float) -> None:
    """Return once the tracking store answers; ``StoreError`` after ``timeout`` seconds."""
    from tracking import StoreError, check_store

    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            check_store()
            return
        except StoreError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)


def trial_summary(run_id: str, config: SearchConfig) -> dict[str, Any]:
    """A child run's figures, status and how many of its episodes the store holds."""
    run = sweep_runs.read_run(run_id)
    m = run.metrics
    steps = sweep_runs.metric_steps(run_id, "episode/reward")
    return {
        "run_id": run_id,
        "status": run.status,
        "scheme": config.task.scheme,
        "hardware": config.task.hardware,
        "budget": config.budget,
        "seed": config.seed,
        "agent": config.agent,
        "episodes": config.episodes,
        "episodes_logged": len(steps),
        "complete": run.status == "FINISHED" and steps == set(range(config.episodes)),
        "best_holdout_accuracy": m.get("best/holdout_accuracy"),
        "best_test_accuracy": m.get("best/test_accuracy"),
        "best_cost_ratio": m.get("best/cost_ratio"),
        "uniform_test_accuracy": m.get("uniform/test_accuracy"),
        "uniform_cost_ratio": m.get("uniform/cost_ratio"),
    }


# -- the driver -------------------------------------------------------------------------


@dataclass
class SweepState:
    """What the driver knows while a sweep runs (passed to ``on_update``)."""

    total: int
    episodes_total: int
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def episodes_done(self) -> int:
        """Episodes finished over all trials (replays of a resumed attempt included)."""
        return sum(
            self.results[k]["episodes"] if k in self.results else p.get("episodes", 0)
            for k, p in self.progress.items()
        )

    @property
    def finished(self) -> int:
        """Trials done (successfully or not)."""
        return len(self.results) + len(self.failures)


@dataclass
class SweepResult:
    """Outcome of a sweep: its parent run, one row per trial, the grouped table."""

    run_id: str
    rows: list[dict[str, Any]]
    table: list[dict[str, Any]]
    failures: dict[str, str]
    wall_s: float

    @property
    def ok(self) -> bool:
        """Every trial finished with every episode in the store."""
        return not self.failures and all(r.get("complete") for r in self.rows)


def preflight(trials: Sequence[Trial]) -> None:
    """Budgets below what a task can reach fail here, before any run (``ValueError``).

    Builds each distinct task once (the workload is trained and cached on first use).
    """
    tasks: dict[str, Any] = {}
    for name, config, _ in trials:
        key = json.dumps(config.task.as_dict(), sort_keys=True, default=str)
        if key not in tasks:
            tasks[key] = config.build_task()
        try:
            tasks[key].check_budget(config.budget)
        except ValueError as exc:
            raise ValueError(f"trial {name}: {exc}") from None


def check_local_resources(spec: SweepSpec, num_cpus: int | None) -> None:
    """``ValueError`` unless a local Ray of ``num_cpus`` CPUs (default: this machine's) and
    this machine's GPUs can run one trial: Ray would wait forever for a trial that asks
    for more than the cluster has."""
    from agents.checks import usable_cpus

    cpus = usable_cpus() if num_cpus is None else int(num_cpus)
    if spec.cpus > cpus:
        raise ValueError(
            f"cpus per trial {spec.cpus:g} is more than the local Ray's {cpus} CPUs: no trial "
            f"could start; pass --cpus-per-trial <= {cpus}"
        )
    if spec.gpus > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if spec.gpus > gpus:
            raise ValueError(
                f"gpus per trial {spec.gpus:g} is more than this machine's {gpus} GPU(s): no "
                "trial could start"
            )


def check_sweep_store(address: str | None) -> str:
    """The tracking URI trials log to; ``ValueError`` if a cluster could not reach it."""
    from urllib.parse import urlparse

    from tracking import check_store

    uri = check_store()
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        from tracking.store import _sqlite_path

        path = _sqlite_path(uri)
        if path is not None:
            uri = f"sqlite:///{path.resolve()}"  # workers may start elsewhere
    elif scheme in ("", "file"):
        uri = f"file://{os.path.abspath(uri.removeprefix('file://'))}"
    if address not in (None, "", "local") and scheme in ("sqlite", "", "file"):
        raise ValueError(
            f"a sweep on the Ray cluster {address!r} needs a tracking server every node can "
            f"reach, not {sweep_runs.tracking_uri()!r}: start one (`hwprune server start "
            "--host 0.0.0.0`) and set MLFLOW_TRACKING_URI=http://HOST:PORT"
        )
    return uri


def _remote_functions(ray: Any) -> tuple[Any, Any]:
    @ray.remote(num_cpus=0)
    class Progress:
        """Episodes finished per trial, written by workers, read by the driver."""

        def __init__(self) -> None:
            self.state: dict[str, dict[str, Any]] = {}

        def update(self, name: str, episodes: int, pid: int, attempt: int) -> None:
            self.state[name] = {"episodes": episodes, "pid": pid, "attempt": attempt}

        def snapshot(self) -> dict[str, dict[str, Any]]:
            return dict(self.state)

    @ray.remote
    def trial_task(trial: TrialSpec, progress: Any) -> dict[str, Any]:
        sweep_runs.use_store(trial.tracking_uri)
        pid = os.getpid()
        _wait_for_store(trial.store_wait_s)
        attempt = int(sweep_runs.read_run(trial.run_id).tags.get(TAG_ATTEMPTS, "0")) + 1
        last = [0.0]

        def report(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or done >= trial.config.get("episodes", 0):
                last[0] = now
                progress.update.remote(trial.name, done, pid, attempt)

        progress.update.remote(trial.name, 0, pid, attempt)
        return run_trial(trial, report, attempt=attempt)

    return Progress, trial_task


def run_sweep(
    spec: SweepSpec,
    *,
    experiment: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    command: str | None = None,
    ship_code: bool = False,
    on_update: Callable[[SweepState], None] | None = None,
    poll_s: float = 0.5,
    on_start: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every trial of ``spec`` on Ray, each as a child run of one sweep run.

    ``address``: an existing Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``);
    None starts a local Ray with ``num_cpus`` CPUs (default: all). When Ray is already
    initialised in this process, it is used as is. ``ship_code`` sends hwprune's
    packages to the workers (Ray ``py_modules``) for clusters without it installed.
    ``on_update`` is called with the sweep's state every ``poll_s`` seconds, ``on_start``
    with the sweep run's id once it exists.

    Bad settings, an unusable store and unachievable budgets raise ``ValueError``
    before any run is created. Returns when every trial has finished or failed. A
    sweep whose driver died (``kill -9``) continues with ``resume_sweep``.
    """
    from tracking import check_experiment

    local = address in (None, "", "local")
    if local:
        check_local_resources(spec, num_cpus)
    trials = spec.trials(check_device=local)
    experiment = experiment or trials[0].config.experiment
    if any(t.config.experiment != experiment for t in trials):
        raise ValueError("every trial of a sweep logs to one experiment; do not sweep it")
    uri = check_sweep_store(address)
    check_experiment(experiment)
    check_outputs(None)  # the journals' state directory, before any run or worker
    preflight(trials)

    with _ray_session(address, num_cpus, ship_code) as ray:
        # The driver logs to the sweep's store; the caller's store setting comes back after.
        with sweep_runs.using_store(uri):
            exp_id = prepare_experiment(experiment)
            parent = sweep_runs.create_parent_run(
                exp_id, f"sweep-{len(trials)}-trials", {TAG_KIND: "sweep", **_driver_tag()}
            )
            try:
                _log_sweep_config(parent, spec, trials, address, command)
                if on_start is not None:
                    on_start(parent)
            except BaseException:
                sweep_runs.finish_run(parent, "KILLED")
                raise
            return _drive(ray, parent, exp_id, spec, trials, {}, uri, command, on_update, poll_s)


#: Tag of a sweep run: where its driver runs (``host:pid``), so that a resume can tell
#: a sweep whose driver died from one that is still running.
TAG_DRIVER = "hwprune.driver"


#: Tag of a sweep's child run: the process running its trial (``host:pid``).
TAG_WORKER = "hwprune.worker"
#: Seconds a resume waits for a stopped driver's workers to stop: Ray ends the tasks of a
#: dead driver a few seconds after it notices, and two processes must never write one run.
WORKER_EXIT_WAIT_S = 60.0


def _driver_tag() -> dict[str, str]:
    return {TAG_DRIVER: _here()}


def _here() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(tag: str | None, marker: bytes) -> int | None:
    """The pid ``tag`` (``host:pid``) names if that process is alive on this host and its
    command line holds ``marker`` (a reused pid is not taken for it); else None."""
    import socket

    host, _, pid_text = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return None
    pid = int(pid_text)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return pid if state != "Z" and marker in cmdline else None


def _wait_for_workers(children: Mapping[str, str], timeout: float) -> None:
    """Return once no child run (trial name -> run id) is still being run by a worker of
    this host; ``ValueError`` naming one after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        busy = [
            (name, pid)
            for name, run_id in children.items()
            if (pid := _alive(sweep_runs.read_run(run_id).tags.get(TAG_WORKER), b"trial_task"))
        ]
        if not busy:
            return
        if time.monotonic() >= deadline:
            name, pid = busy[0]
            raise ValueError(
                f"trial {name} is still running in process {pid} (a worker of the stopped "
                f"driver); resume once it has stopped"
            )
        time.sleep(0.5)


def resume_sweep(
    run_id: str,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    command: str | None = None,
    ship_code: bool = False,
    on_update: Callable[[SweepState], None] | None = None,
    poll_s: float = 0.5,
    on_start: Callable[[str], None] | None = None,
) -> SweepResult:
    """Continue the sweep run ``run_id`` whose driver stopped before the end (``kill -9``,
    a lost machine): its own ``sweep.yaml`` gives the grid.

    Child runs FINISHED stay as they are (each grid point keeps one run); the others are
    run again in their own child runs: one that started resumes from its journal
    (``run_trial``), one still SCHEDULED starts, and a grid point without a child run (the
    driver died while creating them) gets one. The sweep run ends FINISHED when every
    child is. ``KeyError`` for an unknown run, ``ValueError`` for a run that is not an
    unfinished sweep or whose driver is still alive; nothing is changed then.
    """
    from tracking import check_experiment

    uri = check_sweep_store(address)
    with sweep_runs.using_store(uri):
        try:
            parent = sweep_runs.read_run(run_id)
        except Exception as exc:  # MLflow's "run not found"
            raise KeyError(f"no MLflow run {run_id!r} in the tracking store {uri!r}") from exc
        if parent.tags.get(TAG_KIND) != "sweep":
            raise ValueError(
                f"run {run_id!r} is not a sweep run; a search resumes with "
                f"`hwprune search --resume {run_id}`"
            )
        if parent.status == "FINISHED":
            raise ValueError(f"sweep run {run_id!r} is FINISHED: nothing to resume")
        pid = _alive(parent.tags.get(TAG_DRIVER), b"sweep")
        if pid is not None:
            raise ValueError(
                f"sweep run {run_id!r} is still being driven by process {pid} on this "
                "machine; stop it first (it resumes from where it stops)"
            )
        spec = SweepSpec.from_dict(
            sweep_runs.read_yaml_artifact(run_id, "sweep.yaml"), where=f"sweep run {run_id!r}: "
        )
        exp_id = sweep_runs.experiment_of(run_id)
        children = sweep_runs.child_runs(exp_id, run_id, TAG_TRIAL)
        existing = {name: _pick_child(runs) for name, runs in children.items()}
        _wait_for_workers(
            {n: r for n, r in existing.items() if run_status(r) != "FINISHED"},
            WORKER_EXIT_WAIT_S,
        )
    local = address in (None, "", "local")
    if local:
        check_local_resources(spec, num_cpus)
    trials = spec.trials(check_device=local)
    check_experiment(sweep_runs.experiment_name(exp_id, uri))
    check_outputs(None)
    with _ray_session(address, num_cpus, ship_code) as ray:
        with sweep_runs.using_store(uri):
            sweep_runs.set_status(run_id, "RUNNING")
            for key, value in _driver_tag().items():
                sweep_runs.set_tag(run_id, key, value)
            if command:
                stamp = time.strftime("%Y%m%dT%H%M%S")
                sweep_runs.log_text(run_id, command + "\n", f"resumed/command-{stamp}.txt")
            if on_start is not None:
                on_start(run_id)
            return _drive(
                ray, run_id, exp_id, spec, trials, existing, uri, command, on_update, poll_s
            )


def _pick_child(runs: Sequence[tuple[str, str]]) -> str:
    """The child run a grid point continues in: its FINISHED one, else its first."""
    finished = [run_id for run_id, status in runs if status == "FINISHED"]
    return (finished or [run_id for run_id, _ in runs])[0]


class _ray_session:  # noqa: N801 - used like a function
    """``ray`` initialised for a sweep (a local Ray, or a cluster at ``address``), shut
    down after the block if this started it; an already initialised Ray is used as is."""

    def __init__(self, address: str | None, num_cpus: int | None, ship_code: bool) -> None:
        self.address, self.num_cpus, self.ship_code = address, num_cpus, ship_code
        self.started = False

    def __enter__(self) -> Any:
        from agents.extras import require_extra

        require_extra("sweep", "a sweep")
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.ship_code:
                kwargs["runtime_env"] = {"py_modules": _package_dirs()}
            if self.address in (None, "", "local"):
                kwargs["num_cpus"] = self.num_cpus
                kwargs["_node_ip_address"] = "127.0.0.1"  # a local Ray stays on loopback
                kwargs["object_store_memory"] = 200 * 2**20  # trials pass small dicts only
            else:
                kwargs["address"] = self.address
            ray.init(**kwargs)
            self.started = True
        return ray

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            import ray

            ray.shutdown()


def _drive(
    ray: Any,
    parent: str,
    exp_id: str,
    spec: SweepSpec,
    trials: Sequence[Trial],
    existing: Mapping[str, str],
    uri: str,
    command: str | None,
    on_update: Callable[[SweepState], None] | None,
    poll_s: float,
) -> SweepResult:
    """Run the trials of a sweep (those not FINISHED in ``existing``: trial name -> child
    run id) as Ray tasks in their child runs, then log the results into ``parent``."""
    started = time.monotonic()
    state = SweepState(
        total=len(trials), episodes_total=sum(t.config.episodes for t in trials), progress={}
    )
    pending: dict[Any, TrialSpec] = {}
    specs: list[TrialSpec] = []
    try:
        for name, _, settings in trials:
            child = existing.get(name) or sweep_runs.create_child_run(
                exp_id, parent, name, {TAG_TRIAL: name, TAG_KIND: "search"}
            )
            specs.append(
                TrialSpec(
                    name=name,
                    config=settings,
                    run_id=child,
                    parent_run_id=parent,
                    tracking_uri=uri,
                    store_retries=spec.store_retries,
                    state_dir=os.environ.get("HWPRUNE_STATE_DIR"),
                    command=f"{command or 'hwprune sweep'}  # trial {name}",
                )
            )
        todo = []
        for t in specs:
            if t.name in existing and run_status(t.run_id) == "FINISHED":
                state.results[t.name] = _finished_row(t)  # done before the driver stopped
            else:
                todo.append(t)
        Progress, trial_task = _remote_functions(ray)
        progress = Progress.remote()
        pending = {
            trial_task.options(
                num_cpus=spec.cpus, num_gpus=spec.gpus, max_retries=spec.max_retries
            ).remote(t, progress): t
            for t in todo
        }
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=poll_s)
            for ref in done:
                t = pending.pop(ref)
                try:
                    state.results[t.name] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a trial's failure, recorded
                    state.failures[t.name] = _short_error(exc)
                    _mark_failed(t.run_id, exc)
            try:
                state.progress = {
                    **{k: {"episodes": r["episodes"]} for k, r in state.results.items()},
                    **ray.get(progress.snapshot.remote(), timeout=10),
                }
            except Exception:  # noqa: BLE001 - progress is best effort
                pass
            if on_update is not None:
                on_update(state)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        sweep_runs.finish_run(parent, "KILLED")
        raise

    rows = []
    for t in specs:
        if t.name in state.results:
            rows.append(state.results[t.name])
        else:
            config = SearchConfig.from_dict({**t.config, "device": "cpu"})
            row = trial_summary(t.run_id, config)
            row.update(name=t.name, error=state.failures.get(t.name, ""))
            rows.append(row)
    wall = time.monotonic() - started
    table = group_table(rows)
    _log_results(parent, rows, table, wall, state)
    result = SweepResult(parent, rows, table, dict(state.failures), wall)
    sweep_runs.finish_run(parent, "FINISHED" if result.ok else "FAILED")
    return result


def _finished_row(trial: TrialSpec) -> dict[str, Any]:
    """The row of a trial whose child run finished before the sweep was resumed."""
    config = SearchConfig.from_dict({**trial.config, "device": "cpu"})
    row = trial_summary(trial.run_id, config)
    tags = sweep_runs.read_run(trial.run_id).tags
    row.update(
        name=trial.name,
        attempts=int(tags.get(TAG_ATTEMPTS, "1")),
        store_failures=0,
        wall_s=0.0,
    )
    return row


def _package_dirs() -> list[str]:
    import importlib

    return [
        os.path.dirname(importlib.import_module(p).__file__ or "")
        for p in ("agents", "envs", "hwmodels", "pruning", "tracking")
    ]


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


def _log_sweep_config(
    run_id: str,
    spec: SweepSpec,
    trials: Sequence[Trial],
    address: str | None,
    command: str | None,
) -> None:
    import yaml

    from tracking import flatten

    params = flatten(
        {
            "trials": len(trials),
            "ray_address": address or "local",
            "cpus_per_trial": spec.cpus,
            "gpus_per_trial": spec.gpus,
            "max_retries": spec.max_retries,
            "grid": {k: ",".join(map(str, v)) for k, v in spec.axes()},
            "base": dict(spec.base),
        }
    )
    sweep_runs.log_params(run_id, params)
    sweep_runs.log_text(run_id, yaml.safe_dump(spec.as_dict(), sort_keys=False), "sweep.yaml")
    if command:
        sweep_runs.log_text(run_id, command + "\n", "command.txt")


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def group_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scheme, hardware, budget): means and spreads over the other axes."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scheme"], r["hardware"], float(r["budget"])), []).append(r)
    out = []
    for (scheme, hardware, budget), rs in sorted(groups.items()):
        test_m, test_s = _mean_std([r.get("best_test_accuracy") for r in rs])
        hold_m, hold_s = _mean_std([r.get("best_holdout_accuracy") for r in rs])
        cost_m, cost_s = _mean_std([r.get("best_cost_ratio") for r in rs])
        uni_m, _ = _mean_std([r.get("uniform_test_accuracy") for r in rs])
        uni_c, _ = _mean_std([r.get("uniform_cost_ratio") for r in rs])
        out.append(
            {
                "scheme": scheme,
                "hardware": hardware,
                "budget": budget,
                "runs": len(rs),
                "complete": sum(bool(r.get("complete")) for r in rs),
                "holdout_accuracy": hold_m,
                "holdout_accuracy_std": hold_s,
                "test_accuracy": test_m,
                "test_accuracy_std": test_s,
                "cost_ratio": cost_m,
                "cost_ratio_std": cost_s,
                "uniform_test_accuracy": uni_m,
                "uniform_cost_ratio": uni_c,
            }
        )
    return out


def format_table(table: Sequence[dict[str, Any]]) -> str:
    """The grouped table as Markdown (``sweep/table.md``)."""
    head = (
        "| scheme | hardware | budget | runs | complete | test acc | holdout acc | cost ratio "
        "| uniform test acc | uniform cost |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in table:
        lines.append(
            f"| {r['scheme']} | {r['hardware']} | {r['budget']:g} | {r['runs']} | "
            f"{r['complete']} | {r['test_accuracy']:.4f} +- {r['test_accuracy_std']:.4f} | "
            f"{r['holdout_accuracy']:.4f} +- {r['holdout_accuracy_std']:.4f} | "
            f"{r['cost_ratio']:.4f} | {r['uniform_test_accuracy']:.4f} | "
            f"{r['uniform_cost_ratio']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def front_figure(table: Sequence[dict[str, Any]]) -> Any:
    """Test accuracy against cost ratio, one line per (scheme, hardware) over budgets
    (error bars: spread over seeds), the uniform policy dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in table:
        pairs.setdefault((r["scheme"], r["hardware"]), []).append(r)
    for i, ((scheme, hardware), rs) in enumerate(sorted(pairs.items())):
        rs = sorted(rs, key=lambda r: r["budget"])
        color = f"C{i % 10}"
        ax.errorbar(
            [r["cost_ratio"] for r in rs],
            [r["test_accuracy"] for r in rs],
            xerr=[r["cost_ratio_std"] for r in rs],
            yerr=[r["test_accuracy_std"] for r in rs],
            marker="o",
            color=color,
            capsize=3,
            label=f"{scheme} on {hardware}",
        )
        ax.plot(
            [r["uniform_cost_ratio"] for r in rs],
            [r["uniform_test_accuracy"] for r in rs],
            linestyle="--",
            marker="x",
            color=color,
            alpha=0.6,
            label=f"uniform ({scheme}, {hardware})",
        )
        for r in rs:
            ax.annotate(
                f"{r['budget']:g}",
                (r["cost_ratio"], r["test_accuracy"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    ax.set_xlabel("cost ratio vs dense (budgeted metric)")
    ax.set_ylabel("test accuracy of the best policy")
    ax.set_title("sweep: accuracy against cost (labels: budget)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _log_results(
    run_id: str,
    rows: list[dict[str, Any]],
    table: list[dict[str, Any]],
    wall: float,
    state: SweepState,
) -> None:
    import matplotlib.pyplot as plt

    sweep_runs.log_dict(run_id, {"trials": rows, "table": table}, "sweep/results.json")
    sweep_runs.log_text(run_id, format_table(table), "sweep/table.md")
    fig = front_figure(table)
    sweep_runs.log_figure(run_id, fig, "plots/accuracy_vs_cost.png")
    plt.close(fig)
    episodes = sum(int(r.get("episodes_logged") or 0) for r in rows)
    metrics = {
        "sweep/trials": len(rows),
        "sweep/complete": sum(bool(r.get("complete")) for r in rows),
        "sweep/failed": len(state.failures),
        "sweep/retried": sum(int(r.get("attempts", 1)) > 1 for r in rows),
        "sweep/store_failures": sum(int(r.get("store_failures", 0)) for r in rows),
        "sweep/wall_s": wall,
        "sweep/episodes_per_s": episodes / wall if wall > 0 else 0.0,
    }
    sweep_runs.log_metrics(run_id, metrics)


def temp_state_dir() -> str:
    """A fresh directory for episode journals (tests and benchmarks)."""
    return tempfile.mkdtemp(prefix="hwprune-state-")
