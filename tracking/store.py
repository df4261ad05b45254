"""Checks of the MLflow tracking store before any work: reachable, readable, writable.

``check_store()`` fails fast, with one clear message naming the URI, where MLflow would
otherwise fail late (a corrupt or read-only SQLite file after a long search) or slowly (an
unreachable server, retried for minutes). It also makes the first use of a fresh SQLite
store safe for processes that start together, and for one killed meanwhile: the store is
created in a hidden file beside it and renamed into place, under an exclusive lock on
``<db>.lock``. A store an interrupted schema upgrade left with an ``_alembic_tmp_*``
table is repaired (one ``hwprune.store`` warning says what was done). ``check_experiment()``
catches a soft-deleted experiment, which MLflow refuses to log to.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import mlflow

__all__ = ["StoreError", "check_experiment", "check_store"]

#: Where the store says what it repaired (the CLI prints it as a ``note:`` line).
_logger = logging.getLogger("hwprune.store")


class StoreError(ValueError):
    """The MLflow tracking store cannot be used; the message names the URI and why."""


def check_store(uri: str | None = None, *, writable: bool = True, timeout: float = 5.0) -> str:
    """Check the tracking store at ``uri`` (default: MLflow's current one) and return ``uri``.

    - ``sqlite:`` opens (or creates) the database, checks that it is an SQLite file, and
      with ``writable`` that it can be written; the MLflow tables are created under an
      exclusive ``fcntl.flock`` on ``<db>.lock``, so concurrent first uses do not race, in
      a hidden file renamed into place, so a killed first use leaves no half-made store;
      an ``_alembic_tmp_*`` table left by a killed schema upgrade is dropped.
    - ``http(s):`` probes the server's ``/health`` (else its REST API) once, within
      ``timeout`` seconds and without MLflow's retries.
    - ``file:`` or a plain path: the directory is (or can be created) writable.
    - other stores (databases, Databricks) are not probed.

    Raises ``StoreError`` (a ``ValueError``) naming the URI and what is wrong.
    """
    uri = uri or mlflow.get_tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri, writable=writable, timeout=timeout)
    elif scheme in ("http", "https"):
        _check_http(uri, timeout=timeout)
    elif scheme in ("", "file"):
        _check_file_store(uri, writable=writable)
    return uri


def check_experiment(name: str, uri: str | None = None) -> str | None:
    """``StoreError`` if experiment ``name`` cannot be logged to; else its id (None: new).

    MLflow keeps a deleted experiment's name and refuses ``set_experiment`` on it; the
    message says how to restore it or to pick another name.
    """
    uri = uri or mlflow.get_tracking_uri()
    if not isinstance(name, str) or not name.strip():
        raise StoreError(f"experiment name {name!r} is empty; pass --experiment NAME")
    try:
        experiment = mlflow.tracking.MlflowClient(uri).get_experiment_by_name(name)
    except Exception as exc:  # any failure to read the store is the store's
        raise StoreError(f"cannot read MLflow tracking store {uri!r}: {_reason(exc)}") from exc
    if experiment is None:
        return None
    if experiment.lifecycle_stage == "deleted":
        raise StoreError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted in the "
            f"tracking store {uri!r}; restore it with `MLFLOW_TRACKING_URI={uri} mlflow "
            f"experiments restore --experiment-id {experiment.experiment_id}` or pick "
            "another name with --experiment"
        )
    return str(experiment.experiment_id)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without SQLAlchemy's [SQL: ...] tail."""
    orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:`` URI; None for an in-memory database."""
    from sqlalchemy.engine import make_url

    try:
        database = make_url(uri).database
    except Exception as exc:
        raise StoreError(f"MLflow tracking URI {uri!r} is not a valid SQLite URI") from exc
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser()


def _check_sqlite(uri: str, *, writable: bool, timeout: float) -> None:
    path = _sqlite_path(uri)
    if path is None:
        _init_tables(uri)
        return
    if path.exists() and not path.is_file():
        raise StoreError(f"MLflow tracking store {uri!r}: {str(path)!r} is not a file")
    if not path.parent.is_dir():
        raise StoreError(
            f"MLflow tracking store {uri!r}: directory {str(path.parent)!r} does not exist"
        )
    lock = path.with_name(path.name + ".lock")
    if not path.exists():
        if not os.access(path.parent, os.W_OK):
            raise StoreError(
                f"MLflow tracking store {uri!r} cannot be created: directory "
                f"{str(path.parent)!r} is not writable"
            )
        with _locked(lock):
            if not path.exists():  # else another process created it meanwhile
                _create_sqlite(uri, path)
    _probe_sqlite(uri, path, writable=writable, timeout=timeout)
    if _alembic_leftovers(path):
        with _locked(lock):
            _repair_alembic_leftovers(uri, path, timeout=timeout)
    if writable:
        with _locked(lock):
            _init_tables(uri)
    else:
        _init_tables(uri)


#: Prefix of the tables Alembic's batch mode copies a SQLite table through.
_ALEMBIC_TMP = "_alembic_tmp_"


def _create_sqlite(uri: str, path: Path) -> None:
    """Create a fresh SQLite store at ``path`` whole or not at all.

    MLflow's tables are created (every migration run) in a hidden file beside ``path``,
    which is then renamed onto ``path``: a process killed meanwhile leaves no half-made
    store behind, only that file, which the next creation removes.
    """
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    for stale in path.parent.glob(f".{path.name}.creating-*"):  # killed earlier creations
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
    try:
        _initialize_tables(engine)
    except Exception as exc:  # a full disk, a read-only directory: nothing is left behind
        raise StoreError(
            f"MLflow tracking store {uri!r} cannot be created: {_reason(exc)}"
        ) from exc
    finally:
        engine.dispose()
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alembic_leftovers(path: Path) -> list[str]:
    """Tables an interrupted MLflow schema migration left behind (``_alembic_tmp_*``)."""
    try:
        con = sqlite3.connect(str(path), timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        rows = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
            (len(_ALEMBIC_TMP), _ALEMBIC_TMP),
        ).fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        con.close()
    return sorted(name for (name,) in rows)


def _repair_alembic_leftovers(uri: str, path: Path, *, timeout: float) -> None:
    """Drop each ``_alembic_tmp_<table>`` whose ``<table>`` exists, and say so in one line.

    Alembic's batch mode changes a SQLite table by creating ``_alembic_tmp_<table>``,
    copying the rows into it, dropping ``<table>`` and renaming the copy. Killed before
    the drop, the copy is an unfinished duplicate (every row is still in ``<table>``), and
    it stops every later migration ("table _alembic_tmp_... already exists"): dropping it
    lets the migration run again from its start. Killed after the drop, the copy holds
    the only rows: that store is refused (``StoreError``), never guessed at.
    """
    con = sqlite3.connect(str(path), timeout=timeout)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master")}
        dropped = []
        for leftover in _alembic_leftovers(path):
            table = leftover[len(_ALEMBIC_TMP) :]
            if table not in tables:
                raise StoreError(
                    f"MLflow tracking store {uri!r} was stopped in the middle of a schema "
                    f"upgrade: table {table} exists only as {leftover}; restore the store "
                    "from a backup (it cannot be repaired safely)"
                )
            con.execute(f'DROP TABLE "{leftover}"')
            dropped.append(leftover)
        con.commit()
    except sqlite3.Error as exc:
        raise StoreError(
            f"MLflow tracking store {uri!r} holds {', '.join(_alembic_leftovers(path))} from "
            f"an interrupted schema upgrade and cannot be repaired: {exc}"
        ) from exc
    finally:
        con.close()
    if dropped:
        _logger.warning(
            "repaired MLflow tracking store %r: dropped %s, left by a schema upgrade that "
            "was killed (its rows are all in %s)",
            uri,
            ", ".join(dropped),
            ", ".join(d[len(_ALEMBIC_TMP) :] for d in dropped),
        )


def _probe_sqlite(uri: str, path: Path, *, writable: bool, timeout: float) -> None:
    """Read the schema; with ``writable``, rewrite the header's user_version in place."""
    try:
        con = sqlite3.connect(str(path), timeout=timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"MLflow tracking store {uri!r} cannot be opened: {exc}") from exc
    try:
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"MLflow tracking store {uri!r} is not a readable SQLite database: {exc}"
            ) from exc
        if writable:
            try:
                (version,) = con.execute("PRAGMA user_version").fetchone()
                con.execute(f"PRAGMA user_version = {int(version)}")  # a write, same value
                con.commit()
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    return  # another process is writing: writable, just busy
                raise StoreError(
                    f"MLflow tracking store {uri!r} is not writable: {exc}; point "
                    "MLFLOW_TRACKING_URI at a writable store"
                ) from exc
    finally:
        con.close()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if needed)."""
    try:
        fh = open(lock_path, "a")  # closed below, which releases the lock
    except OSError as exc:
        raise StoreError(f"cannot create the store lock file {str(lock_path)!r}: {exc}") from exc
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


def _init_tables(uri: str) -> None:
    """Open the store the way MLflow does (creating its tables) and read from it."""
    try:
        mlflow.tracking.MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # SQLAlchemy, MLflow and OS errors alike mean: unusable
        raise StoreError(f"MLflow tracking store {uri!r} is unusable: {_reason(exc)}") from exc


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_http(uri: str, *, timeout: float) -> None:
    import requests

    base = uri.rstrip("/")
    try:
        response = requests.get(f"{base}/health", timeout=timeout)
    except requests.RequestException as exc:
        raise StoreError(
            f"cannot reach the MLflow tracking server {uri!r} within {timeout:g} s: "
            f"{type(exc).__name__}"
        ) from exc
    if response.status_code == 200:
        return
    # No /health here (an older server, a proxy in front): one REST call, no retries.
    with _environ(
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT=str(max(1, math.ceil(timeout))),
    ):
        try:
            mlflow.tracking.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:
            raise StoreError(
                f"MLflow tracking server {uri!r} does not answer its REST API: {_reason(exc)}"
            ) from exc


def _check_file_store(uri: str, *, writable: bool) -> None:
    from urllib.request import url2pathname

    local = url2pathname(urlparse(uri).path) if uri.startswith("file:") else uri
    path = Path(local).expanduser()
    if path.exists() and not path.is_dir():
        raise StoreError(f"MLflow tracking store {uri!r} is not a directory")
    if not writable:
        return
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(
            f"MLflow tracking store {uri!r} is not writable ({str(existing)!r} is not a "
            "writable directory)"
        )
