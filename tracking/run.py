"""One search = one MLflow run: params, per-episode metrics, artifacts."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml

from tracking.journal import JOURNAL_ARTIFACT, EpisodeJournal, JournalWriteError, read_records

# Downloads of a run's small files (config, journal) would each draw a progress bar.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# MLflow caps a param value (500 characters on older servers): longer values are cut.
_MAX_PARAM = 500
# The experiment tag MLflow 3's UI reads to choose between its GenAI and model-training views.
EXPERIMENT_KIND = "mlflow.experimentKind"
# MLflow's log_batch takes at most 1000 metrics per call.
_MAX_BATCH = 1000


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


class StoreFailure(RuntimeError):
    """The tracking store failed during a search; the episode journal kept everything."""

    def __init__(self, run: SearchRun, cause: BaseException) -> None:
        self.run_id = run.run_id
        self.journal = run.journal.path
        uri = mlflow.get_tracking_uri()
        super().__init__(
            f"the tracking store {uri!r}{_full_disk(uri, cause)} failed during run "
            f"{run.run_id} ({type(cause).__name__}: {str(cause).splitlines()[0][:200]}); "
            f"every finished episode is kept in {str(run.journal.path)!r}. When the store "
            f"is back, `hwprune search --resume {run.run_id}` uploads them and finishes "
            "the search."
        )


def _full_disk(uri: str, cause: BaseException) -> str:
    """`` on the full disk mounted at '/x'`` when ``cause`` says a local store's disk is
    full; else ``""``."""
    from tracking.journal import mount_point

    text, link, seen = "", cause, set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        text += f" {link}"
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT):
            text += " disk is full"
        link = link.__cause__ or link.__context__
    if "disk is full" not in text and "No space left" not in text:
        return ""
    local = None
    if uri.startswith("sqlite:"):
        from tracking.store import _sqlite_path

        try:
            local = _sqlite_path(uri)
        except ValueError:
            local = None
    elif uri.startswith("file:") or "://" not in uri:
        local = Path(uri.removeprefix("file://"))
    return "" if local is None else f" on the full disk mounted at {str(mount_point(local))!r}"


def _store_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (mlflow.exceptions.MlflowException, OSError)
    try:
        import sqlalchemy.exc

        errors += (sqlalchemy.exc.SQLAlchemyError,)
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        pass
    return errors


#: What a failing tracking store raises (HTTP errors are OSErrors).
STORE_ERRORS = _store_errors()

#: ``errno`` values that mean the disk under a store cannot take more.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is the tracking store failing: a
    database error (SQLAlchemy, sqlite3: "database or disk is full"), a full or read-only
    disk, or a lost connection to a server; not a bug or a refused value."""
    import sqlite3

    try:
        import sqlalchemy.exc

        database: tuple[type[BaseException], ...] = (sqlalchemy.exc.SQLAlchemyError,)
    except ImportError:  # pragma: no cover - sqlalchemy comes with mlflow
        database = ()
    try:
        import requests

        database += (requests.ConnectionError, requests.Timeout)
    except ImportError:  # pragma: no cover
        pass
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, (*database, sqlite3.Error)):
            return True
        if isinstance(link, OSError) and link.errno in _DISK_ERRNOS:
            return True
        link = link.__cause__ or link.__context__
    return False


def version_description(tags: Mapping[str, Any]) -> str:
    """A registered version's description from its tags: what was pruned, for which
    hardware, at what cost and accuracy, and whether and how it was fine-tuned."""
    what = " ".join(
        part
        for part in (
            str(tags.get("model", "a model")),
            f"pruned by {tags['scheme']}" if "scheme" in tags else "",
            f"for {tags['hardware']}" if "hardware" in tags else "",
        )
        if part
    )
    figures = [
        f"{label} {tags[key]}"
        for key, label in (
            ("cost_ratio", "cost ratio"),
            ("density", "density"),
            ("test_accuracy", "test accuracy"),
        )
        if key in tags
    ]
    tuned = tags.get("fine_tuned")
    return (
        what
        + (": " + ", ".join(figures) if figures else "")
        + (f". Fine-tuned: {tuned}." if tuned else ".")
    )


#: What a store says when two writers insert the same unique row at once (PostgreSQL,
#: SQLite, MySQL), as MLflow passes it on.
_UNIQUE_RACE = ("UniqueViolation", "duplicate key", "UNIQUE constraint failed", "Duplicate entry")


def retry_unique_race(write: Callable[[], Any], *, attempts: int = 3) -> Any:
    """``write()``, tried again when it lost a race to insert a shared row.

    Runs of one experiment logging the same data split at once (a sweep's searches on a
    shared server) race to create its dataset row: the store checks, both find none, both
    insert, and the loser's transaction is rolled back with a unique-key error. On the
    next try the row exists and is reused. Any other error, or the last try's, is raised.
    """
    for attempt in range(attempts):
        try:
            return write()
        except STORE_ERRORS as exc:  # a server's REST error, or a local store's SQLAlchemy one
            if attempt == attempts - 1 or not any(k in str(exc) for k in _UNIQUE_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    return None


class SearchRun:
    """A thin shell over an active MLflow run; also an ``EpisodeSink``.

    Per-episode metrics are buffered, since one HTTP/SQL round trip per metric would
    dominate a fast search, and sent at most ``flush_seconds`` after an episode ends
    or every ``flush_every`` episodes, whichever comes first; each batch holds whole
    episodes, so a killed process leaves no episode half-logged. The run's
    ``journal`` (``tracking.journal``) holds every episode durably in the meantime and
    is mirrored into the run at each flush.
    """

    def __init__(
        self,
        run: mlflow.ActiveRun,
        *,
        flush_every: int = 50,
        flush_seconds: float = 5.0,
    ) -> None:
        self.run = run
        self.run_id = run.info.run_id
        self._client = mlflow.tracking.MlflowClient()
        self._pending: list[list[mlflow.entities.Metric]] = []
        self.flush_every = int(flush_every)
        self.flush_seconds = float(flush_seconds)
        self._last_flush = time.monotonic()
        self.journal = EpisodeJournal.for_run(self.run_id)
        self.store_error: StoreFailure | None = None
        self.registered: tuple[str, str] | None = None

    def log_config(self, config: Mapping[str, Any], command: str | None = None) -> None:
        """All config as params, plus ``config.yaml`` and the exact ``command.txt``."""
        mlflow.log_params(flatten(config))
        self.log_text(yaml.safe_dump(dict(config), sort_keys=False), "config.yaml")
        if command:
            self.log_text(command + "\n", "command.txt")

    def write_episode(self, episode: int, metrics: dict[str, float]) -> None:
        """Buffer one episode's metrics (``step`` = episode index); flush when due."""
        now = int(time.time() * 1000)
        self._pending.append(
            [
                mlflow.entities.Metric(f"episode/{key}", float(value), now, int(episode))
                for key, value in metrics.items()
            ]
        )
        due = time.monotonic() - self._last_flush >= self.flush_seconds
        if self.store_error is None and (due or len(self._pending) >= self.flush_every):
            try:
                self.flush()
            except StoreFailure:
                pass  # the search goes on; the journal keeps every episode

    def flush(self) -> None:
        """Send buffered episodes (whole episodes per batch) and mirror the journal.

        ``StoreFailure`` if the store fails now or failed before: from then on the
        run is offline, and the episodes wait in the journal for ``--resume``.
        """
        if self.store_error is not None:
            raise self.store_error
        try:
            self._send()
        except STORE_ERRORS as exc:
            self.store_error = StoreFailure(self, exc)
            raise self.store_error from exc

    def _send(self) -> None:
        while self._pending:
            batch: list[mlflow.entities.Metric] = []
            taken = 0
            for episode in self._pending:
                if batch and len(batch) + len(episode) > _MAX_BATCH:
                    break
                batch += episode
                taken += 1
            self._client.log_batch(self.run_id, metrics=batch)
            del self._pending[:taken]
        if self.journal.path.exists():
            self._client.log_artifact(
                self.run_id, str(self.journal.path), os.path.dirname(JOURNAL_ARTIFACT)
            )
        self._last_flush = time.monotonic()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Summary metrics (no step), or one point of a series at ``step``."""
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact."""
        mlflow.log_text(text, artifact_file)

    def log_json(self, obj: Any, artifact_file: str) -> None:
        """A JSON artifact."""
        self.log_text(json.dumps(obj, indent=2, sort_keys=False), artifact_file)

    def log_dir(self, path: str | os.PathLike[str], artifact_path: str) -> None:
        """Every file of a local directory under ``artifact_path``."""
        mlflow.log_artifacts(str(path), artifact_path)

    def log_model(
        self,
        export_dir: str | os.PathLike[str],
        *,
        input_example: Any,
        name: str,
        register_as: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """Log an hwprune export as an MLflow pyfunc model; its URI.

        ``mlflow.pyfunc.load_model(uri).predict(raw_images)`` returns classes (see
        ``tracking/pyfunc_model.py``, which travels with the model). ``register_as``
        also registers it in the Model Registry under that name, with ``tags``.
        """
        import numpy as np
        from mlflow.models import ModelSignature
        from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

        example = np.asarray(input_example)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(example.dtype, (-1, *example.shape[1:]))]),
            outputs=Schema([TensorSpec(np.dtype("int64"), (-1,))]),
            params=ParamSchema([ParamSpec("output", "string", "label")]),
        )

        info = self._log_pyfunc(example, signature, export_dir, name, tags)
        if tags:  # the UI's model pages show this tag as the model's description
            mlflow.set_logged_model_tags(
                info.model_id, {"mlflow.note.content": version_description(tags)}
            )
        if register_as is not None:
            version = mlflow.register_model(info.model_uri, register_as, tags=dict(tags or {}))
            mlflow.tracking.MlflowClient().update_model_version(
                register_as, version.version, description=version_description(tags or {})
            )
            self.registered = (register_as, version.version)
        return info.model_uri

    @staticmethod
    def _log_pyfunc(
        example: Any,
        signature: Any,
        export_dir: str | os.PathLike[str],
        name: str,
        tags: Mapping[str, Any] | None,
    ) -> Any:
        import torch

        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"export": str(export_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "mlflow"],
            metadata={"hwprune": dict(tags or {})},
        )

    def log_dataset(
        self, features: Any, targets: Any, *, name: str, context: str, provenance: str
    ) -> None:
        """One split as an MLflow dataset input (name, digest, shapes, ``context``: what
        the run used it for); ``provenance`` (the data source string) is its source."""
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource

        source = CodeDatasetSource({"hwprune.data": provenance})
        dataset = mlflow.data.from_numpy(features, targets=targets, source=source, name=name)
        retry_unique_race(lambda: mlflow.log_input(dataset, context=context))

    def set_description(self, markdown: str) -> None:
        """The run's description (the MLflow UI shows it on the run's overview)."""
        mlflow.set_tag("mlflow.note.content", markdown)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure as PNG."""
        mlflow.log_figure(figure, artifact_file)


@contextmanager
def search_run(
    experiment: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    resume_run_id: str | None = None,
) -> Iterator[SearchRun]:
    """Start an MLflow run in ``experiment`` (default local store or MLFLOW_TRACKING_URI).

    ``resume_run_id`` reopens that run instead. The run ends FINISHED when the block
    completes, KILLED when it is interrupted (``KeyboardInterrupt``, which SIGTERM
    raises too during a search) and FAILED on any other error, so no half-written run
    looks done and none stays RUNNING; a resume stopped by an error whose
    ``leaves_run_as_it_was`` is true (``agents.recorder.ReplayDiverged``) ends with the
    status the run had before.
    """
    previous = None
    if resume_run_id is None:
        open_experiment(experiment)
        active = mlflow.start_run(run_name=run_name, tags=dict(tags or {}))
    else:
        # start_run refuses a run outside the process's active experiment.
        run = mlflow.tracking.MlflowClient().get_run(resume_run_id)
        previous = run.info.status
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        active = mlflow.start_run(run_id=resume_run_id)
    handle = SearchRun(active)
    status = "FAILED"
    try:
        yield handle
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception as exc:
        # A resume refused by what it found (a journal that is not this search's) changes
        # nothing: the run keeps the status it had.
        if previous is not None and getattr(exc, "leaves_run_as_it_was", False):
            status = previous
            raise
        if isinstance(exc, (StoreFailure, JournalWriteError)) or not is_store_failure(exc):
            raise
        # The store failed outside a batch of episodes (a summary metric, an artifact):
        # the same one-line failure, with the journal keeping every episode.
        handle.store_error = StoreFailure(handle, exc)
        raise handle.store_error from exc
    finally:
        handle.journal.close()
        try:
            handle.flush()
        except StoreFailure:
            ended_cleanly = status == "FINISHED"
            status = "FAILED"
            if ended_cleanly:  # else the block's own error is already on its way out
                raise
        finally:
            try:
                mlflow.end_run(status)
            except STORE_ERRORS:
                if handle.store_error is None:
                    raise


def open_experiment(name: str) -> Any:
    """Make ``name`` the active experiment, creating it if new; the experiment.

    Tolerates another process creating or tagging it at the same time, and tags it
    with ``EXPERIMENT_KIND`` (MLflow 3's UI reads it to open the experiment as model
    training, not GenAI).
    """
    exp = _set_experiment(name)
    if exp.tags.get(EXPERIMENT_KIND) is None:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # set concurrently
            mlflow.tracking.MlflowClient().set_experiment_tag(
                exp.experiment_id, EXPERIMENT_KIND, "custom_model_development"
            )
    return exp


def current_run_id() -> str | None:
    """The id of the run active in this process (a search's), or None."""
    run = mlflow.active_run()
    return None if run is None else run.info.run_id


def _set_experiment(name: str) -> Any:
    """``mlflow.set_experiment``, tolerating another process creating it at the same time."""
    try:
        return mlflow.set_experiment(name)
    except mlflow.exceptions.MlflowException:
        exp = mlflow.tracking.MlflowClient().get_experiment_by_name(name)
        if exp is None:
            raise
        return mlflow.set_experiment(experiment_id=exp.experiment_id)


def run_state(run_id: str) -> tuple[str, dict[str, Any], list[dict[str, Any]], int]:
    """What a resumed search needs from a run: status, config, journal, episodes logged.

    The journal is the local one when this machine wrote it (it is never behind the
    store's copy), else the copy mirrored into the run. ``KeyError`` for an unknown run,
    ``ValueError`` for a run without a search config.
    """
    client = mlflow.tracking.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise KeyError(
            f"no MLflow run {run_id!r} in the tracking store {mlflow.get_tracking_uri()!r}"
        ) from exc
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
            config = yaml.safe_load(Path(path).read_text())
    except (mlflow.exceptions.MlflowException, OSError, yaml.YAMLError):
        config = None
    if not isinstance(config, dict):
        raise ValueError(f"run {run_id!r} holds no search config (config.yaml); not a search run")
    local = EpisodeJournal.for_run(run_id)
    records = local.records()
    if not records:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(run_id, JOURNAL_ARTIFACT, tmp)
                records = list(read_records(path))
        except (mlflow.exceptions.MlflowException, OSError):
            records = []
    history = client.get_metric_history(run_id, "episode/reward")
    logged = 1 + max((m.step for m in history), default=-1)
    return run.info.status, config, records, logged


def download_artifacts(run_id: str, artifact_path: str = "") -> Path:
    """Download a run's artifacts to a fresh temp dir; ``KeyError`` for an unknown run.

    ``discard_download(path)`` removes the temp dir when done.
    """
    client = mlflow.tracking.MlflowClient()
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise KeyError(
            f"no MLflow run {run_id!r} in the tracking store {mlflow.get_tracking_uri()!r}"
        ) from exc
    dest = Path(tempfile.mkdtemp(prefix=_DOWNLOAD_PREFIX))
    try:
        return Path(client.download_artifacts(run_id, artifact_path, str(dest)))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


_DOWNLOAD_PREFIX = "hwprune-run-"


def discard_download(path: str | os.PathLike[str]) -> None:
    """Remove the temporary folder a ``download_artifacts`` result lives in."""
    for folder in (Path(path), *Path(path).parents):
        if folder.name.startswith(_DOWNLOAD_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
            return
