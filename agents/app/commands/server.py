"""``hwprune server start|stop|status``: the project's MLflow server on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from agents.app.commands.errors import OneLineUsageErrors, fail

console = Console()
server_app = typer.Typer(
    cls=OneLineUsageErrors,
    no_args_is_help=True,
    help="A shared MLflow tracking server (mlflow server on a project-local PostgreSQL).",
)

ROOT_HELP = "Folder of the server's database, artifacts and logs (git-ignored)."
DEFAULT_ROOT = Path(".hwprune-server")


@server_app.command("start")
def start(
    root: Path = typer.Option(DEFAULT_ROOT, help=ROOT_HELP),
    host: str = typer.Option(
        "127.0.0.1", help="Interface mlflow server listens on (0.0.0.0: a cluster's nodes)."
    ),
    port: int = typer.Option(5000, help="Port of mlflow server."),
    workers: int = typer.Option(2, help="mlflow server worker processes."),
) -> None:
    """Start PostgreSQL and mlflow server (creating the database on first use)."""
    from agents.extras import require_extra
    from tracking.server import ServerError, start_server

    try:
        require_extra("server", "hwprune server start")
        if not 0 < port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {port}")
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        info = start_server(root, host=host, port=port, workers=workers)
    except (ServerError, ValueError, OSError) as exc:
        fail(exc)
    console.print(
        f"MLflow tracking server on PostgreSQL (port {info.pg_port}) at {info.tracking_uri}; "
        f"artifacts in {info.artifacts}"
    )
    console.print(f"export MLFLOW_TRACKING_URI={info.tracking_uri}", soft_wrap=True)


@server_app.command("stop")
def stop(root: Path = typer.Option(DEFAULT_ROOT, help=ROOT_HELP)) -> None:
    """Stop mlflow server and PostgreSQL (the data stay)."""
    from tracking.server import ServerError, stop_server

    try:
        stopped = stop_server(root)
    except (ServerError, OSError) as exc:
        fail(exc)
    console.print("stopped" if stopped else f"no server under {str(root)!r}")


@server_app.command("status")
def status(
    root: Path = typer.Option(DEFAULT_ROOT, help=ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Whether the server and its database answer, and the tracking URI."""
    from tracking.server import describe, server_status

    info = server_status(root)
    if info is None:
        fail(ValueError(f"no server under {str(root)!r}; start one with `hwprune server start`"))
    state = describe(info)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    for key, value in state.items():
        console.print(f"{key}: {value}")
