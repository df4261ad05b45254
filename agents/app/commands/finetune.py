"""``hwprune finetune``: fine-tune a search's pruned model, structure fixed, as its own run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from agents.app.commands.errors import check_resume_flags, fail
from core import defaults

if TYPE_CHECKING:
    from agents.app.finetune_run import FinetuneInterrupted

console = Console()


def finetune_command(
    ctx: typer.Context,
    source: str = typer.Argument(None, help="Search run id, or an export directory."),
    epochs: int = typer.Option(1, help="Passes over the training split (cosine schedule)."),
    steps: int = typer.Option(None, help="SGD steps of batch 64 instead of --epochs."),
    lr: float = typer.Option(
        defaults.RECOVERY_LR, help="Peak learning rate (SGD, momentum 0.9, cosine)."
    ),
    distill: bool = typer.Option(False, help="Distil from the dense model (Hinton's KD)."),
    seed: int = typer.Option(0, help="Seed of the batch order."),
    experiment: str = typer.Option(None, help="MLflow experiment (default: the source's)."),
    out: Path = typer.Option(None, "--out", help="Also export the fine-tuned model to DIR."),
    register: str = typer.Option(
        None, metavar="NAME", help="Register the fine-tuned model in the Model Registry."
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    resume: str = typer.Option(
        None, metavar="RUN_ID", help="Continue an interrupted fine-tune run from its last epoch."
    ),
) -> None:
    """Recover a pruned model: masked training (pruned weights held at zero), cosine
    schedule, optional distillation; log test accuracy before, per epoch and after."""
    from tqdm import tqdm

    from agents.app.finetune_run import FinetuneInterrupted, resume_finetune, run_finetune

    if resume is not None:
        try:
            allowed = {"resume", "out", "register", "progress"}
            check_resume_flags(ctx, allowed, "a fine-tune", "source and settings")
        except ValueError as exc:
            fail(exc)
    elif source is None:
        fail(ValueError("missing SOURCE: a search run id or an export directory (or --resume)"))
    bar = tqdm(desc="recovery", unit="step", disable=not progress)

    def set_total(total: int) -> None:
        bar.reset(total=total)

    try:
        if resume is not None:
            result = resume_finetune(
                resume, export_dir=out, register=register, progress=bar.update,
                on_total=set_total,
            )  # fmt: skip
        else:
            result = run_finetune(
                source,
                epochs=epochs,
                steps=steps,
                lr=lr,
                seed=seed,
                distill=distill,
                experiment=experiment,
                export_dir=out,
                register=register,
                progress=bar.update,
                on_total=set_total,
            )
    except FinetuneInterrupted as exc:
        bar.close()
        _report_interrupted(exc)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as exc:
        bar.close()
        fail(exc)
    bar.close()
    table = Table(title=f"recovery of {result.source} ({result.steps} steps)")
    table.add_column("test accuracy", justify="left")
    table.add_column("", justify="right")
    table.add_row("before", f"{result.before:.4f}")
    for i, acc in enumerate(result.per_epoch, result.first_epoch):
        table.add_row(f"after epoch {i}", f"{acc:.4f}")
    table.add_row("after (BatchNorm re-estimated)", f"{result.after:.4f}")
    console.print(table)
    console.print(f"MLflow run id: [bold]{result.run_id}[/] (child of the search run)")
    if result.model_uri is not None:
        console.print(f"MLflow model: {result.model_uri}", markup=False, soft_wrap=True)
    if result.export_dir is not None:
        console.print(f"exported fine-tuned model: {result.export_dir}")


def _report_interrupted(exc: FinetuneInterrupted) -> None:
    """Where an interrupted recovery stands and how to go on; exit 128 + signal."""
    import signal

    name = signal.Signals(exc.signum).name
    run_id, done = exc.run_id, exc.epochs_done
    if done:
        console.print(
            f"interrupted by {name} after {done} finished epoch(s); MLflow run "
            f"[bold]{run_id}[/] is KILLED and keeps the model of epoch {done}."
        )
        console.print(
            f"continue with: hwprune finetune --resume {run_id}   (on this machine; it goes "
            f"on from epoch {done + 1} on the same schedule)"
        )
    else:
        console.print(
            f"interrupted by {name} before the first epoch finished; MLflow run "
            f"[bold]{run_id}[/] is KILLED and keeps nothing to continue from."
        )
    raise typer.Exit(128 + int(exc.signum))
