"""Read searches back from the tracking store: list, filter, sort and compare runs.

A local SQLite store is read without importing MLflow (``tracking.sqlite_runs``: the
import alone takes seconds); any other store through ``MlflowClient``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tracking.sqlite_runs import SqliteRuns, StoredRun, open_store

#: Metrics every search run logs: ``list_runs`` sorts by them even where no run has them.
SEARCH_METRICS: tuple[str, ...] = (
    "best/test_accuracy",
    "best/holdout_accuracy",
    "best/cost_ratio",
    "best/density",
    "uniform/test_accuracy",
    "uniform/cost_ratio",
    "dense/test_accuracy",
)


def __getattr__(name: str) -> Any:
    # ``TrackingError``: what the MLflow client raises for a run, experiment or artifact
    # it cannot find or read; resolved on first use, so that importing this module does
    # not import MLflow.
    if name == "TrackingError":
        import mlflow

        return mlflow.exceptions.MlflowException
    raise AttributeError(f"module 'tracking.query' has no attribute {name!r}")


@dataclass(frozen=True)
class RunSummary:
    """What a user chooses a pruned model by: the setting and the figures of one run."""

    run_id: str
    name: str
    experiment: str
    status: str
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def param(self, key: str) -> str:
        """A setting, whether the run stored it nested (``task.scheme``) or flat; the
        metric as the run resolved it (``latency_s`` for the hardware's default)."""
        if key == "metric" and "metric_resolved" in self.params:
            return self.params["metric_resolved"]
        return self.params.get(f"task.{key}", self.params.get(key, "-"))

    def metric(self, key: str) -> float:
        """A metric, NaN when the run has none."""
        return self.metrics.get(key, math.nan)


def _stored(run: Any) -> StoredRun:
    """An MLflow ``Run`` as the fields this module reads."""
    return StoredRun(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


def _summary(run: StoredRun, experiments: dict[str, str]) -> RunSummary:
    return RunSummary(
        run_id=run.run_id,
        name=run.name,
        experiment=experiments.get(run.experiment_id, run.experiment_id),
        status=run.status,
        kind=run.tags.get("hwprune.kind", "front" if "budget_range" in run.params else "search"),
        params=dict(run.params),
        metrics=dict(run.metrics),
    )


class _MlflowRuns:
    """``SqliteRuns``' queries through ``MlflowClient`` (any kind of store)."""

    def __init__(self) -> None:
        import mlflow

        from tracking.store import check_store

        self.uri = check_store(writable=False)
        self.client = mlflow.tracking.MlflowClient()

    def experiments(self, *, active_only: bool = True) -> dict[str, str]:
        return {e.experiment_id: e.name for e in self.client.search_experiments()}

    def experiment_by_name(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.experiment_id

    def search_runs(self, experiment_ids: Sequence[str], max_results: int) -> list[StoredRun]:
        runs = self.client.search_runs(list(experiment_ids), max_results=max_results)
        return [_stored(r) for r in runs]

    def get_run(self, run_id: str) -> StoredRun | None:
        import mlflow

        try:
            return _stored(self.client.get_run(run_id))
        except mlflow.exceptions.MlflowException:
            return None

    def experiment_name(self, experiment_id: str) -> str:
        return self.client.get_experiment(experiment_id).name


def _store() -> SqliteRuns | _MlflowRuns:
    """The current tracking store: read directly when it is a local SQLite file, else
    through MLflow (after ``check_store``: ``StoreError`` naming an unusable store)."""
    return open_store() or _MlflowRuns()


def list_runs(
    *,
    experiments: Sequence[str] | None = None,
    scheme: str | None = None,
    hardware: str | None = None,
    status: str | None = None,
    sort_by: str | None = None,
    ascending: bool = False,
    limit: int = 50,
) -> list[RunSummary]:
    """Runs of the named experiments (all when None), filtered, sorted by a metric.

    ``KeyError`` names an experiment that does not exist; ``ValueError`` a ``sort_by``
    that is neither one of ``SEARCH_METRICS`` nor a metric of any run of these
    experiments. Runs without the sort metric come last.
    """
    store = _store()
    if experiments:
        names: dict[str, str] = {}
        for name in experiments:
            eid = store.experiment_by_name(name)
            if eid is None:
                known = sorted(store.experiments().values())
                raise KeyError(f"no experiment {name!r}; experiments: {', '.join(known)}")
            names[eid] = name
    else:
        names = store.experiments()
    runs = store.search_runs(list(names), max_results=5000)
    out = [_summary(r, names) for r in runs]
    if sort_by is not None:
        _check_sort_metric(sort_by, out)
    if scheme is not None:
        out = [r for r in out if r.param("scheme") == scheme]
    if hardware is not None:
        out = [r for r in out if r.param("hardware") == hardware]
    if status is not None:
        out = [r for r in out if r.status == status.upper()]
    if sort_by is not None:
        have = [r for r in out if not math.isnan(r.metric(sort_by))]
        rest = [r for r in out if math.isnan(r.metric(sort_by))]
        have.sort(key=lambda r: r.metric(sort_by), reverse=not ascending)
        out = have + rest
    return out[: max(0, int(limit))]


def _check_sort_metric(sort_by: str, runs: Sequence[RunSummary]) -> None:
    valid = sorted({*SEARCH_METRICS, *metric_keys(runs)})
    if sort_by not in valid:
        import difflib

        close = difflib.get_close_matches(sort_by, valid, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown metric {sort_by!r} to sort by.{hint} Valid: {', '.join(valid)}")


def get_runs(run_ids: Sequence[str]) -> list[RunSummary]:
    """The summaries of these runs, in order; ``KeyError`` names an unknown id."""
    store = _store()
    experiments = store.experiments(active_only=False)
    out = []
    for run_id in run_ids:
        run = _find_run(store, run_id)
        if run.experiment_id not in experiments and isinstance(store, _MlflowRuns):
            experiments[run.experiment_id] = store.experiment_name(run.experiment_id)
        out.append(_summary(run, experiments))
    return out


def _find_run(store: SqliteRuns | _MlflowRuns, run_id: str) -> StoredRun:
    """A run by its id or a unique prefix of it (tables show the first 8 characters)."""
    run = store.get_run(run_id)
    if run is not None:
        return run
    ids = list(store.experiments())
    matches = [r for r in store.search_runs(ids, max_results=5000) if r.run_id.startswith(run_id)]
    if len(matches) == 1 and run_id:
        return matches[0]
    where = f"in the tracking store {store.uri!r}"
    if len(matches) > 1:
        raise KeyError(f"run id prefix {run_id!r} matches {len(matches)} runs {where}; give more")
    raise KeyError(f"no MLflow run {run_id!r} {where}")


def run_status(run_id: str) -> str:
    """A run's status (``RUNNING``, ``FINISHED``, ``FAILED``, ...); ``TrackingError``
    for an unknown run."""
    import mlflow

    return mlflow.tracking.MlflowClient().get_run(run_id).info.status


def experiment_name_of(run_id: str) -> str | None:
    """The name of the experiment a run belongs to; None when the store cannot tell."""
    import mlflow

    client = mlflow.tracking.MlflowClient()
    try:
        return client.get_experiment(client.get_run(run_id).info.experiment_id).name
    except mlflow.exceptions.MlflowException:
        return None


def metric_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Every metric name these runs carry (for 'sort by' choices)."""
    return sorted({k for r in runs for k in r.metrics})


#: Where ``mlflow ui`` serves by default.
LOCAL_UI = "http://127.0.0.1:5000"


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """Where to see a run in the MLflow UI, for the tracking store ``uri``.

    A tracking server (``http(s)://``): its own page of the run. A local store (SQLite
    file, ``file:`` or a path): the ``mlflow ui`` command that serves this store, then the
    page. Any other store (a database): the run's ids, the URI without its password.
    """
    import shlex
    from urllib.parse import urlsplit, urlunsplit

    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"see it: {uri.rstrip('/')}/{page}"
    if parts.scheme in ("sqlite", "file", ""):
        command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
        return f"see it: `{command}`, then {LOCAL_UI}/{page}"
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
        uri = urlunsplit(parts._replace(netloc=netloc))
    return (
        f"see it: experiment {experiment_id}, run {run_id} in an MLflow UI serving {uri} "
        f"(`mlflow ui --backend-store-uri URI`)"
    )
