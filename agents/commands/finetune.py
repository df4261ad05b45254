"""``hwprune finetune``: fine-tune a search's pruned model, structure fixed, as its own run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from agents.commands.errors import fail

console = Console()


def finetune_command(
    source: str = typer.Argument(..., help="Search run id, or an export directory."),
    epochs: int = typer.Option(1, help="Passes over the training split."),
    steps: int = typer.Option(None, help="SGD steps of batch 64 instead of --epochs."),
    lr: float = typer.Option(0.01, help="Learning rate (SGD, momentum 0.9)."),
    seed: int = typer.Option(0, help="Seed of the batch order."),
    experiment: str = typer.Option(None, help="MLflow experiment (default: the source's)."),
    out: Path = typer.Option(None, "--out", help="Also export the fine-tuned model to DIR."),
    register: str = typer.Option(
        None, metavar="NAME", help="Register the fine-tuned model in the Model Registry."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Fine-tune a pruned model with its pruned weights held at zero; log before/after."""
    from tqdm import tqdm

    from agents.finetune_run import run_finetune

    bar = tqdm(desc="fine-tune steps", unit="step", disable=not progress)
    try:
        result = run_finetune(
            source,
            epochs=epochs,
            steps=steps,
            lr=lr,
            seed=seed,
            experiment=experiment,
            export_dir=out,
            register=register,
            progress=bar.update,
        )
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as exc:
        bar.close()
        fail(exc)
    bar.close()
    table = Table(title=f"fine-tune of {result.source} ({result.steps} steps)")
    table.add_column("test accuracy", justify="left")
    table.add_column("", justify="right")
    table.add_row("before", f"{result.before:.4f}")
    for i, acc in enumerate(result.per_epoch, 1):
        table.add_row(f"after epoch {i}", f"{acc:.4f}")
    table.add_row("after (BatchNorm re-estimated)", f"{result.after:.4f}")
    console.print(table)
    console.print(f"MLflow run id: [bold]{result.run_id}[/] (child of the search run)")
    if result.export_dir is not None:
        console.print(f"exported fine-tuned model: {result.export_dir}")
