"""One search = one MLflow run: params, per-episode metrics, artifacts."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml

# MLflow caps a param value (500 characters on older servers): longer values are cut.
_MAX_PARAM = 500


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested config dicts to ``a.b`` keys with string values (MLflow params)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = str(value)[:_MAX_PARAM]
    return out


class SearchRun:
    """A thin shell over an active MLflow run; also an ``EpisodeSink``.

    Per-episode metrics are buffered and flushed in batches, since one HTTP/SQL round
    trip per metric would dominate a fast search.
    """

    def __init__(self, run: mlflow.ActiveRun, *, flush_every: int = 50) -> None:
        self.run = run
        self.run_id = run.info.run_id
        self._client = mlflow.tracking.MlflowClient()
        self._pending: list[mlflow.entities.Metric] = []
        self.flush_every = int(flush_every)

    def log_config(self, config: Mapping[str, Any], command: str | None = None) -> None:
        """All config as params, plus ``config.yaml`` and the exact ``command.txt``."""
        mlflow.log_params(flatten(config))
        self.log_text(yaml.safe_dump(dict(config), sort_keys=False), "config.yaml")
        if command:
            self.log_text(command + "\n", "command.txt")

    def write_episode(self, episode: int, metrics: dict[str, float]) -> None:
        """Buffer one episode's metrics (``step`` = episode index)."""
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self._pending.append(
                mlflow.entities.Metric(f"episode/{key}", float(value), now, int(episode))
            )
        if len(self._pending) >= self.flush_every * max(len(metrics), 1):
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics."""
        if self._pending:
            for i in range(0, len(self._pending), 1000):
                self._client.log_batch(self.run_id, metrics=self._pending[i : i + 1000])
            self._pending = []

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Summary metrics (no step)."""
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact."""
        mlflow.log_text(text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """A JSON artifact."""
        self.log_text(json.dumps(obj, indent=2, sort_keys=False), artifact_file)

    def log_dir(self, path: str | os.PathLike[str], artifact_path: str) -> None:
        """Every file of a local directory under ``artifact_path``."""
        mlflow.log_artifacts(str(path), artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as PNG."""
        mlflow.log_figure(figure, artifact_file)


@contextmanager
def search_run(
    experiment: str, *, run_name: str | None = None, tags: Mapping[str, str] | None = None
) -> Iterator[SearchRun]:
    """Start an MLflow run in ``experiment`` (default local store or MLFLOW_TRACKING_URI).

    A failure inside the block marks the run FAILED, so no half-written run looks done.
    """
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags=dict(tags or {})) as active:
        handle = SearchRun(active)
        try:
            yield handle
        finally:
            handle.flush()


def download_artifacts(run_id: str, artifact_path: str = "") -> Path:
    """Download a run's artifacts to a fresh temp dir; ``KeyError`` for an unknown run."""
    client = mlflow.tracking.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise KeyError(
            f"no MLflow run {run_id!r} in the tracking store {mlflow.get_tracking_uri()!r}"
        ) from exc
    dest = Path(tempfile.mkdtemp(prefix="hwprune-run-"))
    return Path(client.download_artifacts(run_id, artifact_path, str(dest)))
