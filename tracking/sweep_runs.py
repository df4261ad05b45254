"""The runs of a sweep: a parent run, child runs created before their searches start,
and what the sweep's driver and workers read and write on them, by run id.

A search logs into the active run (``tracking.search_run``); a sweep also works on
runs that are not active in its process (the parent run, the children of its trials),
which these functions reach through the tracking client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow.entities import Metric, Param

from tracking.run import STORE_ERRORS, open_experiment

#: The tag the MLflow UI nests a run under its parent run by.
PARENT_TAG = "mlflow.parentRunId"


def _client() -> Any:
    return mlflow.tracking.MlflowClient()


def use_store(uri: str) -> None:
    """Log to the tracking store at ``uri`` from now on, in this process."""
    mlflow.set_tracking_uri(uri)


@contextmanager
def using_store(uri: str) -> Iterator[None]:
    """Log to ``uri`` inside the block; then the process's earlier setting, exactly.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment,
    and MLflow's own temporary switch restores an unset URI by deleting that variable:
    both are put back here as they were, so a library caller's store is not changed.
    """
    from mlflow.tracking._tracking_service import utils  # MLflow keeps the setting here

    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    explicit_before = utils._tracking_uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        if explicit_before is not None:
            mlflow.set_tracking_uri(explicit_before)
        else:
            utils._tracking_uri = None
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before


def tracking_uri() -> str:
    """The tracking URI this process logs to."""
    return mlflow.get_tracking_uri()


def end_active_runs(status: str = "FINISHED", *, stop_on_store_error: bool = False) -> None:
    """End every run active in this process with ``status``.

    ``stop_on_store_error`` gives up at the first error of a failing store instead of
    raising it (the run stays as the store last saw it).
    """
    while mlflow.active_run() is not None:
        try:
            mlflow.end_run(status)
        except STORE_ERRORS:
            if not stop_on_store_error:
                raise
            return


def prepare_experiment(name: str) -> str:
    """Create experiment ``name`` (if new) with the tags searches would set; its id.

    Done once by a sweep's driver: trials starting together would each find the
    experiment untagged and race to tag it (a unique-key violation on PostgreSQL).
    """
    return str(open_experiment(name).experiment_id)


def _create_run(experiment_id: str, name: str, tags: Mapping[str, str]) -> str:
    return _client().create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id


def create_parent_run(experiment_id: str, name: str, tags: Mapping[str, str]) -> str:
    """A new run (status RUNNING) that child runs are nested under; its id."""
    return _create_run(experiment_id, name, tags)


def create_child_run(
    experiment_id: str, parent_run_id: str, name: str, tags: Mapping[str, str]
) -> str:
    """A new run under ``parent_run_id``, SCHEDULED until a search starts in it; its id."""
    run_id = _create_run(experiment_id, name, {PARENT_TAG: parent_run_id, **tags})
    _client().update_run(run_id, status="SCHEDULED")
    return run_id


@contextmanager
def active_run_id(run_id: str) -> Iterator[None]:
    """Within the block, the run a search starts (``tracking.search_run``) is the
    pre-created ``run_id`` (``MLFLOW_RUN_ID``, which ``mlflow.start_run`` picks up)."""
    os.environ["MLFLOW_RUN_ID"] = run_id
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)


@dataclass(frozen=True)
class RunRecord:
    """What a sweep reads back from a run: its status, tags and latest metrics."""

    status: str
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def read_run(run_id: str) -> RunRecord:
    """The status, tags and latest metrics of a run."""
    run = _client().get_run(run_id)
    return RunRecord(run.info.status, dict(run.data.tags), dict(run.data.metrics))


def metric_steps(run_id: str, key: str) -> set[int]:
    """The steps at which a run logged metric ``key``."""
    return {m.step for m in _client().get_metric_history(run_id, key)}


def has_artifact(run_id: str, path: str) -> bool:
    """Whether a run holds an artifact at ``path``."""
    folder = os.path.dirname(path) or None
    return any(a.path == path for a in _client().list_artifacts(run_id, folder))


def set_tag(run_id: str, key: str, value: str) -> None:
    """Set a tag on a run."""
    _client().set_tag(run_id, key, value)


def log_params(run_id: str, params: Mapping[str, str]) -> None:
    """Log params (string values, e.g. ``tracking.flatten``'s) to a run in one batch."""
    _client().log_batch(run_id, params=[Param(k, v) for k, v in params.items()])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log metrics to a run in one batch, all at ``step`` and the current time."""
    now = int(time.time() * 1000)
    _client().log_batch(
        run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
    )


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    """A text artifact of a run."""
    _client().log_text(run_id, text, artifact_file)


def log_dict(run_id: str, obj: Any, artifact_file: str) -> None:
    """A JSON (or YAML, by the file's extension) artifact of a run."""
    _client().log_dict(run_id, obj, artifact_file)


def log_figure(run_id: str, figure: Any, artifact_file: str) -> None:
    """A matplotlib figure as an image artifact of a run."""
    _client().log_figure(run_id, figure, artifact_file)


def finish_run(run_id: str, status: str) -> None:
    """End a run that is not active in this process with ``status`` (``FINISHED``,
    ``FAILED``, ``KILLED``)."""
    _client().set_terminated(run_id, status)


def set_status(run_id: str, status: str) -> None:
    """Set a run's status without ending it (``RUNNING`` again, for a resumed sweep)."""
    _client().update_run(run_id, status=status)


def experiment_of(run_id: str) -> str:
    """The id of the experiment a run belongs to."""
    return str(_client().get_run(run_id).info.experiment_id)


def experiment_name(experiment_id: str, uri: str | None = None) -> str:
    """The name of experiment ``experiment_id``."""
    return str(mlflow.tracking.MlflowClient(uri).get_experiment(experiment_id).name)


def read_yaml_artifact(run_id: str, path: str) -> Any:
    """A run's YAML artifact at ``path``, parsed; ``ValueError`` if it has none."""
    import tempfile
    from pathlib import Path

    import yaml

    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = _client().download_artifacts(run_id, path, tmp)
            return yaml.safe_load(Path(local).read_text())
    except (mlflow.exceptions.MlflowException, OSError, yaml.YAMLError) as exc:
        raise ValueError(f"run {run_id!r} has no readable {path} ({type(exc).__name__})") from exc


def child_runs(
    experiment_id: str, parent_run_id: str, name_tag: str
) -> dict[str, list[tuple[str, str]]]:
    """The runs nested under ``parent_run_id``, by their ``name_tag`` tag: name ->
    [(run id, status)], oldest first."""
    runs = _client().search_runs(
        [experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=50000,
        order_by=["attributes.start_time ASC"],
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for run in runs:
        name = run.data.tags.get(name_tag)
        if name is not None:
            out.setdefault(name, []).append((run.info.run_id, run.info.status))
    return out
