"""Read searches back from the tracking store: list, filter, sort and compare runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mlflow

#: What the MLflow client raises for a run, experiment or artifact it cannot find or read.
TrackingError = mlflow.exceptions.MlflowException


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


def _summary(run: Any, experiments: dict[str, str]) -> RunSummary:
    tags = run.data.tags
    return RunSummary(
        run_id=run.info.run_id,
        name=run.info.run_name or "",
        experiment=experiments.get(run.info.experiment_id, run.info.experiment_id),
        status=run.info.status,
        kind=tags.get("hwprune.kind", "front" if "budget_range" in run.data.params else "search"),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


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

    ``KeyError`` names an experiment that does not exist. Runs without the sort metric
    come last.
    """
    client = mlflow.tracking.MlflowClient()
    if experiments:
        found = []
        for name in experiments:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                names = sorted(e.name for e in client.search_experiments())
                raise KeyError(f"no experiment {name!r}; experiments: {', '.join(names)}")
            found.append(exp)
    else:
        found = client.search_experiments()
    names = {e.experiment_id: e.name for e in found}
    runs = client.search_runs(list(names), max_results=5000)
    out = [_summary(r, names) for r in runs]
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


def get_runs(run_ids: Sequence[str]) -> list[RunSummary]:
    """The summaries of these runs, in order; ``KeyError`` names an unknown id."""
    client = mlflow.tracking.MlflowClient()
    out = []
    names: dict[str, str] = {}
    for run_id in run_ids:
        run = _find_run(client, run_id)
        eid = run.info.experiment_id
        if eid not in names:
            names[eid] = client.get_experiment(eid).name
        out.append(_summary(run, names))
    return out


def _find_run(client: Any, run_id: str) -> Any:
    """A run by its id or a unique prefix of it (tables show the first 8 characters)."""
    try:
        return client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        pass
    ids = [e.experiment_id for e in client.search_experiments()]
    matches = [
        r for r in client.search_runs(ids, max_results=5000) if r.info.run_id.startswith(run_id)
    ]
    if len(matches) == 1 and run_id:
        return matches[0]
    where = f"in the tracking store {mlflow.get_tracking_uri()!r}"
    if len(matches) > 1:
        raise KeyError(f"run id prefix {run_id!r} matches {len(matches)} runs {where}; give more")
    raise KeyError(f"no MLflow run {run_id!r} {where}")


def run_status(run_id: str) -> str:
    """A run's status (``RUNNING``, ``FINISHED``, ``FAILED``, ...); ``TrackingError``
    for an unknown run."""
    return mlflow.tracking.MlflowClient().get_run(run_id).info.status


def experiment_name_of(run_id: str) -> str | None:
    """The name of the experiment a run belongs to; None when the store cannot tell."""
    client = mlflow.tracking.MlflowClient()
    try:
        return client.get_experiment(client.get_run(run_id).info.experiment_id).name
    except TrackingError:
        return None


def metric_keys(runs: Sequence[RunSummary]) -> list[str]:
    """Every metric name these runs carry (for 'sort by' choices)."""
    return sorted({k for r in runs for k in r.metrics})
