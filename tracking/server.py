"""A shared MLflow tracking server: ``mlflow server`` on a project-local PostgreSQL.

``start_server(root)`` creates (once) a PostgreSQL cluster under ``root/postgres``,
listening on 127.0.0.1 only with a generated password, a database ``mlflow`` in it, and
starts ``mlflow server`` with that database as its backend store and ``root/artifacts``
as the artifact store (served through the server: clients upload over HTTP, so workers
on other machines need no shared file system). Both outlive the command that started
them; ``stop_server(root)`` stops them. ``root/server.json`` records ports, process ids
and the tracking URI (``MLFLOW_TRACKING_URI``) that searches and sweeps use.

PostgreSQL refuses to run as root: as root, its programs run as the ``postgres`` user
(Debian's package creates it) through ``runuser``, and the cluster's directory is
owned by that user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ServerError",
    "ServerInfo",
    "find_postgres",
    "free_port",
    "restart_mlflow",
    "server_status",
    "start_server",
    "stop_mlflow",
    "stop_server",
]

#: The state file of a server root.
STATE_FILE = "server.json"
#: The database user and database the server's backend store uses.
DB_USER = "hwprune"
DB_NAME = "mlflow"


class ServerError(RuntimeError):
    """The tracking server cannot be started or stopped; the message says why."""


@dataclass
class ServerInfo:
    """Where a started server lives (the content of ``server.json``)."""

    root: str
    host: str
    port: int
    pg_port: int
    password: str
    mlflow_pid: int | None = None

    @property
    def tracking_uri(self) -> str:
        """What ``MLFLOW_TRACKING_URI`` is set to for searches and sweeps."""
        return f"http://{self.host}:{self.port}"

    @property
    def backend_uri(self) -> str:
        """The SQLAlchemy URI of the backend store (psycopg2 driver)."""
        return f"postgresql+psycopg2://{DB_USER}:{self.password}@127.0.0.1:{self.pg_port}/{DB_NAME}"

    @property
    def pg_data(self) -> Path:
        """The PostgreSQL cluster's data directory."""
        return Path(self.root) / "postgres" / "data"

    @property
    def artifacts(self) -> Path:
        """Where the server keeps every run's artifacts."""
        return Path(self.root) / "artifacts"


def find_postgres() -> Path | None:
    """The directory of PostgreSQL's server programs (``initdb``, ``pg_ctl``), or None.

    ``$HWPRUNE_PG_BIN`` first, then Debian's ``/usr/lib/postgresql/<version>/bin`` (the
    newest), then ``PATH``.
    """
    candidates: list[Path] = []
    if os.environ.get("HWPRUNE_PG_BIN"):
        candidates.append(Path(os.environ["HWPRUNE_PG_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.replace(".", "").isdigit()]
        for v in sorted(versions, key=lambda p: float(p.name), reverse=True):
            candidates.append(v / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pg_user() -> str | None:
    """The user PostgreSQL runs as: None (this user) unless this is root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError(
            "PostgreSQL refuses to run as root and there is no 'postgres' user to run it "
            "as; run `hwprune server start` as a normal user or create one "
            "(`useradd --system postgres`)"
        ) from None
    return "postgres"


def _as_pg(cmd: list[str]) -> list[str]:
    user = _pg_user()
    return cmd if user is None else ["runuser", "-u", user, "--", *cmd]


def _run(cmd: list[str], what: str, *, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ServerError(f"{what} failed (exit {proc.returncode}): {' / '.join(tail)}")
    return proc.stdout


def _load(root: Path) -> ServerInfo | None:
    path = root / STATE_FILE
    if not path.is_file():
        return None
    return ServerInfo(**json.loads(path.read_text()))


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a new file ``path`` readable by its owner only, from its creation
    (mode 600 at ``open``, never wider, whatever the umask; an earlier file there is
    removed first, so its mode cannot carry over; a symbolic link there is not followed).
    """
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _save(info: ServerInfo) -> None:
    path = Path(info.root) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    write_secret(tmp, json.dumps(asdict(info), indent=2))  # holds the password
    tmp.replace(path)


def _init_postgres(info: ServerInfo, bin_dir: Path) -> None:
    """Create the cluster (password auth on 127.0.0.1 only), owned by the postgres user."""
    pg_root = info.pg_data.parent
    pg_root.mkdir(parents=True, exist_ok=True)
    user = _pg_user()
    pwfile = pg_root / "pwfile"
    write_secret(pwfile, info.password + "\n")
    if user is not None:
        shutil.chown(pg_root, user)
        shutil.chown(pwfile, user)
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(pg_root)])
        if probe.returncode != 0:
            raise ServerError(
                f"PostgreSQL runs as user {user!r}, which cannot reach {str(pg_root)!r}: make "
                "its parent directories world-searchable (chmod o+x) or pick another --root"
            )
    try:
        _run(
            _as_pg(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(info.pg_data),
                    "-U",
                    DB_USER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            "initdb",
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _pg_running(info: ServerInfo, bin_dir: Path) -> bool:
    proc = subprocess.run(
        _as_pg([str(bin_dir / "pg_ctl"), "status", "-D", str(info.pg_data)]),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def _start_postgres(info: ServerInfo, bin_dir: Path) -> None:
    if _pg_running(info, bin_dir):
        return
    if _port_in_use("127.0.0.1", info.pg_port):
        raise ServerError(f"PostgreSQL port {info.pg_port} on 127.0.0.1 is taken")
    log = info.pg_data.parent / "postgres.log"
    options = f"-c listen_addresses=127.0.0.1 -p {info.pg_port} -c unix_socket_directories=''"
    _run(
        _as_pg(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(info.pg_data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
            ]
        ),
        f"starting PostgreSQL (log: {log})",
    )


def _create_database(info: ServerInfo) -> None:
    import psycopg2

    con = psycopg2.connect(
        host="127.0.0.1",
        port=info.pg_port,
        user=DB_USER,
        password=info.password,
        dbname="postgres",
        connect_timeout=10,
    )
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {DB_NAME}")
    finally:
        con.close()


def _alive(pid: int | None, needle: str = "mlflow") -> bool:
    """Whether ``pid`` runs and its command line mentions ``needle`` (not a reused pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return needle.encode() in cmdline


def _health(uri: str, timeout: float = 2.0) -> bool:
    import requests

    try:
        return requests.get(f"{uri}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _start_mlflow(info: ServerInfo, *, workers: int, timeout: float) -> None:
    if _alive(info.mlflow_pid) and _health(info.tracking_uri):
        return
    if _port_in_use(info.host, info.port):
        raise ServerError(
            f"port {info.port} on {info.host} is taken by another program; pass --port"
        )
    info.artifacts.mkdir(parents=True, exist_ok=True)
    log_path = Path(info.root) / "mlflow.log"
    env = {
        **os.environ,
        # The password stays off the command line (ps shows it to every user).
        "MLFLOW_BACKEND_STORE_URI": info.backend_uri,
        # MLflow 3's background job runner: not used here, half a dozen processes.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--artifacts-destination",
                str(info.artifacts),
                "--host",
                info.host,
                "--port",
                str(info.port),
                "--workers",
                str(workers),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: stop_server ends all of it
        )
    info.mlflow_pid = proc.pid
    _save(info)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise ServerError(
                f"mlflow server exited with {proc.returncode} (log: {log_path}): "
                + " / ".join(tail)
            )
        if _health(info.tracking_uri, timeout=1.0):
            return
        time.sleep(0.25)
    _stop_mlflow(info)
    raise ServerError(f"mlflow server did not answer within {timeout:g} s (log: {log_path})")


def _stop_mlflow(info: ServerInfo, timeout: float = 15.0) -> None:
    pid = info.mlflow_pid
    if _alive(pid):
        assert pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _group_alive(pid)
    info.mlflow_pid = None
    _save(info)


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is left (reaping our own zombie leader)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def start_server(
    root: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    pg_port: int | None = None,
    workers: int = 2,
    timeout: float = 120.0,
) -> ServerInfo:
    """Start (creating on first use) PostgreSQL and ``mlflow server`` under ``root``.

    Idempotent: what already runs is left running. ``pg_port`` None keeps the port of an
    existing cluster, else picks a free one. Raises ``ServerError`` naming what failed
    (no PostgreSQL programs, a port taken, a log to read).
    """
    bin_dir = find_postgres()
    if bin_dir is None:
        raise ServerError(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed; install them "
            "(Debian: `apt-get install postgresql`) or set HWPRUNE_PG_BIN to their directory"
        )
    root_path = Path(root).resolve()
    root_path.mkdir(parents=True, exist_ok=True)
    info = _load(root_path)
    if info is None:
        info = ServerInfo(
            root=str(root_path),
            host=host,
            port=int(port),
            pg_port=int(pg_port or free_port()),
            password=secrets.token_urlsafe(24),
        )
    else:
        info.host, info.port = host, int(port)
        if pg_port:
            info.pg_port = int(pg_port)
    _save(info)
    if not (info.pg_data / "PG_VERSION").is_file():
        _init_postgres(info, bin_dir)
    _start_postgres(info, bin_dir)
    _create_database(info)
    _start_mlflow(info, workers=workers, timeout=timeout)
    return info


def stop_mlflow(root: str | os.PathLike[str]) -> None:
    """Stop ``mlflow server`` alone (PostgreSQL keeps running): a server outage."""
    info = server_status(root)
    if info is None:
        raise ServerError(f"no tracking server under {str(root)!r}")
    _stop_mlflow(info)


def restart_mlflow(
    root: str | os.PathLike[str], *, workers: int = 2, timeout: float = 120.0
) -> ServerInfo:
    """Stop and start ``mlflow server`` alone (PostgreSQL keeps running)."""
    info = server_status(root)
    if info is None:
        raise ServerError(f"no tracking server under {str(root)!r}")
    _stop_mlflow(info)
    _start_mlflow(info, workers=workers, timeout=timeout)
    return info


def stop_server(root: str | os.PathLike[str]) -> bool:
    """Stop ``mlflow server`` and PostgreSQL under ``root``; False if none was set up."""
    info = _load(Path(root).resolve())
    if info is None:
        return False
    _stop_mlflow(info)
    bin_dir = find_postgres()
    if bin_dir is not None and info.pg_data.is_dir() and _pg_running(info, bin_dir):
        _run(
            _as_pg([str(bin_dir / "pg_ctl"), "stop", "-D", str(info.pg_data), "-m", "fast"]),
            "stopping PostgreSQL",
        )
    return True


def server_status(root: str | os.PathLike[str]) -> ServerInfo | None:
    """The recorded server under ``root`` (None if never started)."""
    return _load(Path(root).resolve())


def describe(info: ServerInfo) -> dict[str, Any]:
    """What is running: the tracking URI, and whether each part answers."""
    bin_dir = find_postgres()
    return {
        "tracking_uri": info.tracking_uri,
        "mlflow": "up" if _health(info.tracking_uri) else "down",
        "postgres": ("up" if bin_dir is not None and _pg_running(info, bin_dir) else "down"),
        "postgres_port": info.pg_port,
        "artifacts": str(info.artifacts),
        "root": info.root,
    }
