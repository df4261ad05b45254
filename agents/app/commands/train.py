"""``hwprune train``: a workload's trained weights (committed, cached or trained now)."""

from __future__ import annotations

import typer
from rich.console import Console

from agents.app.commands.errors import fail

console = Console()


def train_command(
    workload: str = typer.Argument(..., help="Workload (see `hwprune list`)."),
    data: str = typer.Option(None, help="Data (default: the workload's own)."),
    seed: int = typer.Option(0, help="Seed of the initialisation and the batch order."),
    retrain: bool = typer.Option(
        False, help="Train by the recipe even when committed or cached weights exist."
    ),
) -> None:
    """Train a workload by its recipe, or load the weights a committed checkpoint or the
    cache holds for it; print its test accuracy and where the weights are."""
    from agents.checks import check_int
    from envs.workloads.builtin import WORKLOADS, get_workload

    try:
        WORKLOADS.check(workload)
        check_int("seed", seed, minimum=0, maximum=2**32 - 1)
        loaded = get_workload(workload, data=data, seed=seed, train=True, retrain=retrain)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        fail(exc)
    meta = loaded.meta
    if meta.get("shipped"):
        where = f"committed checkpoint {meta['checkpoint_file']} (sha256 {meta['sha256']})"
    elif meta.get("from_cache"):
        where = f"cache {meta['cache_file']}"
    else:
        seconds = meta.get("train_seconds", 0)
        where = f"trained now in {seconds:.0f} s, cached in {meta['cache_file']}"
    console.print(f"{workload} on {meta.get('data')}: test accuracy {meta['test_accuracy']:.4f}")
    console.print(f"weights: {where}", soft_wrap=True)
