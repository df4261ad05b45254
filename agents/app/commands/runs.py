"""``hwprune runs`` and ``hwprune compare``: choose a pruned model from the runs."""

from __future__ import annotations

import json
import math

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from agents.app.commands.errors import fail

console = Console()

#: (label, metric) of the figures a pruned model is chosen by.
FIGURES: tuple[tuple[str, str], ...] = (
    ("test acc", "best/test_accuracy"),
    ("holdout", "best/holdout_accuracy"),
    ("cost", "best/cost_ratio"),
    ("density", "best/density"),
    ("uniform test", "uniform/test_accuracy"),
    ("dense test", "dense/test_accuracy"),
)


def _num(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def runs_command(
    experiment: list[str] = typer.Option(None, help="Experiment name (repeat; default: all)."),
    scheme: str = typer.Option(None, help="Only runs of this scheme."),
    hardware: str = typer.Option(None, help="Only runs on this hardware preset."),
    status: str = typer.Option(None, help="FINISHED, RUNNING, KILLED or FAILED."),
    sort: str = typer.Option(
        "best/test_accuracy",
        help="Metric to sort by, highest first (e.g. best/cost_ratio; a metric the runs log).",
    ),
    ascending: bool = typer.Option(False, "--asc", help="Lowest first."),
    limit: int = typer.Option(20, help="Rows shown."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List search and fine-tune runs with the figures to choose a model by."""
    from agents.checks import check_int
    from tracking.query import list_runs

    try:
        check_int("--limit", limit, minimum=1)
    except ValueError as exc:
        fail(exc)
    if status is not None and status.upper() not in ("FINISHED", "RUNNING", "KILLED", "FAILED"):
        fail(ValueError(f"unknown status {status!r}; valid: FINISHED, RUNNING, KILLED, FAILED"))
    try:
        runs = list_runs(
            experiments=experiment,
            scheme=scheme,
            hardware=hardware,
            status=status,
            sort_by=sort,
            ascending=ascending,
            limit=limit,
        )
    except (KeyError, ValueError) as exc:
        fail(exc)
    if as_json:
        rows = [
            {"run_id": r.run_id, "name": r.name, "experiment": r.experiment,
             "status": r.status, "kind": r.kind, "params": r.params, "metrics": r.metrics}
            for r in runs
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=f"runs, by {sort}", pad_edge=False, padding=(0, 1, 0, 0)
    )
    for col in ("run", "agent", "scheme", "hardware", "budget", "test", "cost", "status"):
        table.add_column(col, no_wrap=col in ("run", "status"))
    for r in runs:
        agent = r.param("agent") if r.kind == "search" else r.kind
        table.add_row(
            r.run_id[:8],
            agent,
            r.param("scheme"),
            r.param("hardware"),
            r.param("budget"),
            _num(r.metric("best/test_accuracy")),
            _num(r.metric("best/cost_ratio"), 3),
            r.status[:8],
        )
    console.print(table)
    if not runs:
        console.print("no runs match")


def compare_command(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Side by side: settings and figures of the given runs; best of each figure in bold."""
    from tracking.query import get_runs

    if len(run_ids) < 2:
        fail(ValueError(f"compare needs two or more run ids, got {len(run_ids)}: {run_ids[0]}"))
    try:
        runs = get_runs(run_ids)
    except (KeyError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps({r.run_id: {"params": r.params, "metrics": r.metrics} for r in runs}))
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("")
    for r in runs:
        table.add_column(r.run_id[:8], justify="right")
    for label in ("model", "scheme", "hardware", "metric", "budget", "agent", "episodes", "seed"):
        table.add_row(label, *(r.param(label) for r in runs))
    table.add_row("status", *(r.status for r in runs))
    for label, key in FIGURES:
        values = [r.metric(key) for r in runs]
        known = [v for v in values if not math.isnan(v)]
        best = (
            (min(known) if key in ("best/cost_ratio", "best/density") else max(known))
            if known
            else None
        )
        cells = [
            f"[bold]{_num(v)}[/]" if best is not None and v == best and len(known) > 1 else _num(v)
            for v in values
        ]
        table.add_row(label, *cells)
    console.print(table)
