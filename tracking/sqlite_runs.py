"""Read runs from a local SQLite MLflow store without importing MLflow.

``hwprune runs`` and ``compare`` read a handful of rows; importing MLflow and its
SQLAlchemy store to do so takes 3-5 s on a busy machine, most of these commands' time.
A local SQLite store (MLflow's default since 3.7, and what ``MLFLOW_TRACKING_URI=
sqlite:///...`` names) is read here directly, read-only, with the semantics of
``MlflowClient.search_experiments`` / ``search_runs`` / ``get_run`` (active experiments
and runs, newest first; latest metric values; NaN metrics as NaN).

Anything this module is not sure of (another kind of store, no database file yet, a
schema without the columns it reads, MLflow workspaces) makes ``open_store`` return
None, and the caller uses MLflow itself. ``tests/integration/test_runs.py`` checks that both give
the same runs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

#: The columns read, per table: a store without them is left to MLflow.
_COLUMNS = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {"run_uuid", "name", "experiment_id", "status", "start_time", "lifecycle_stage"},
    "params": {"run_uuid", "key", "value"},
    "latest_metrics": {"run_uuid", "key", "value", "is_nan"},
    "tags": {"run_uuid", "key", "value"},
}
#: MLflow's default store became ``sqlite:///mlflow.db`` (in the working directory) in 3.7.
_SQLITE_DEFAULT_SINCE = (3, 7)


@dataclass(frozen=True)
class StoredRun:
    """What ``tracking.query`` reads of a run (MLflow's ``Run``, the parts it uses)."""

    run_id: str
    name: str
    experiment_id: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


def tracking_uri() -> str | None:
    """The tracking URI MLflow would use, when it can be told without importing MLflow;
    None otherwise."""
    if "mlflow" in sys.modules:  # already paid for: ask it (set_tracking_uri included)
        import mlflow

        return mlflow.get_tracking_uri()
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if _mlflow_version() < _SQLITE_DEFAULT_SINCE or _has_mlruns_data(Path("mlruns")):
        return None  # a file store: MLflow's
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def _mlflow_version() -> tuple[int, ...]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("mlflow")
    except PackageNotFoundError:
        return ()
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _has_mlruns_data(path: Path) -> bool:
    """MLflow's test for an existing file store: an experiment directory with meta.yaml."""
    try:
        return any(
            p.is_dir() and p.name.isdigit() and (p / "meta.yaml").exists() for p in path.iterdir()
        )
    except OSError:
        return False


def sqlite_path(uri: str | None) -> Path | None:
    """The database file of a ``sqlite:`` URI naming an existing local file; else None."""
    if not uri or urlparse(uri).scheme != "sqlite":
        return None
    rest = uri[len("sqlite://") :]  # SQLAlchemy's: "/rel.db" or "//abs/path.db"
    if len(rest) < 2 or not rest.startswith("/") or "?" in rest:
        return None  # sqlite:// (in memory) or URI options: MLflow's business
    path = Path(unquote(rest[1:]))
    return path if path.is_file() else None


class SqliteRuns:
    """Read-only queries on one MLflow SQLite database."""

    def __init__(self, path: Path, uri: str) -> None:
        self.path = path
        self.uri = uri

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        try:
            yield con
        finally:
            con.close()

    def usable(self) -> bool:
        """Whether this module can read the database as MLflow would."""
        if os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true"):
            return False
        try:
            with self._connect() as con:
                # A schema upgrade killed half-way leaves _alembic_tmp_* tables: the MLflow
                # path repairs them (tracking.store) and says so; this reader must not hide it.
                leftover = con.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                    "AND name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'"
                ).fetchone()
                if leftover is not None:
                    return False
                for table, wanted in _COLUMNS.items():
                    have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
                    if not wanted <= have:
                        return False
                have = {row[1] for row in con.execute("PRAGMA table_info(experiments)")}
                if "workspace" in have:
                    rows = con.execute("SELECT DISTINCT workspace FROM experiments").fetchall()
                    if any(r[0] not in (None, "default") for r in rows):
                        return False
        except sqlite3.Error:
            return False
        return True

    def experiments(self, *, active_only: bool = True) -> dict[str, str]:
        """Experiment id -> name (``search_experiments``: the active ones)."""
        sql = "SELECT experiment_id, name FROM experiments"
        if active_only:
            sql += " WHERE lifecycle_stage = 'active'"
        with self._connect() as con:
            return {str(i): n for i, n in con.execute(sql)}

    def experiment_by_name(self, name: str) -> str | None:
        """The id of the experiment called ``name``, deleted or not (as MLflow finds it)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT experiment_id FROM experiments WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def search_runs(self, experiment_ids: Sequence[str], max_results: int) -> list[StoredRun]:
        """The active runs of these experiments, newest first (``search_runs``' order)."""
        if not experiment_ids:
            return []
        marks = ",".join("?" * len(experiment_ids))
        return self._runs(
            f"experiment_id IN ({marks}) AND lifecycle_stage = 'active'",
            [int(e) if str(e).isdigit() else e for e in experiment_ids],
            max_results,
        )

    def get_run(self, run_id: str) -> StoredRun | None:
        """The run with this exact id, whatever its state (``get_run``)."""
        found = self._runs("run_uuid = ?", [run_id], 1)
        return found[0] if found else None

    def artifact_dir(self, run_id: str) -> Path | None:
        """The local directory of a run's artifacts; None when the run is unknown or its
        artifacts live elsewhere (a server, an object store)."""
        with self._connect() as con:
            try:
                row = con.execute(
                    "SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)
                ).fetchone()
            except sqlite3.Error:
                return None
        if row is None or not row[0]:
            return None
        parsed = urlparse(row[0])
        if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
            path = Path(unquote(parsed.path))
        elif parsed.scheme == "" and row[0].startswith("/"):
            path = Path(row[0])
        else:
            return None
        return path if path.is_dir() else None

    def _runs(self, where: str, args: list[Any], limit: int) -> list[StoredRun]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT run_uuid, name, experiment_id, status FROM runs "
                f"WHERE {where} ORDER BY start_time DESC, run_uuid LIMIT ?",
                [*args, int(limit)],
            ).fetchall()
            ids = [r[0] for r in rows]
            params: dict[str, dict[str, str]] = {i: {} for i in ids}
            metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
            tags: dict[str, dict[str, str]] = {i: {} for i in ids}
            for chunk in _chunks(ids, 500):  # SQLite's limit on ? per statement
                marks = ",".join("?" * len(chunk))
                for rid, key, value in con.execute(
                    f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", chunk
                ):
                    params[rid][key] = value
                for rid, key, value, is_nan in con.execute(
                    "SELECT run_uuid, key, value, is_nan FROM latest_metrics "
                    f"WHERE run_uuid IN ({marks})",
                    chunk,
                ):
                    metrics[rid][key] = float("nan") if is_nan else float(value)
                for rid, key, value in con.execute(
                    f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk
                ):
                    tags[rid][key] = value
        return [
            StoredRun(
                run_id=rid,
                name=name or "",
                experiment_id=str(eid),
                status=status,
                params=params[rid],
                metrics=metrics[rid],
                tags=tags[rid],
            )
            for rid, name, eid, status in rows
        ]


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def open_store() -> SqliteRuns | None:
    """The current tracking store, when it is a local SQLite database this module reads
    as MLflow would; None for anything else (the caller then uses MLflow)."""
    uri = tracking_uri()
    path = sqlite_path(uri)
    if path is None or uri is None:
        return None
    store = SqliteRuns(path, uri)
    return store if store.usable() else None
