"""Recover a pruned model with its structure held fixed, as its own MLflow run.

The source is a search run (its ``pruned_model``) or an export directory; either holds
the masked weights and, in its manifest, the task it was pruned for. Recovery is
``envs.workloads.recovery.recover``: the pruned weights stay zero (``torch.nn.utils.prune``
reparametrisation: masked weights get no gradient), a cosine schedule, the workload's
augmentation, optionally distilled from the dense model. Test accuracy is logged before
and after every epoch, and the result is exported and logged like a search's (every
format, the pyfunc model, optionally registered). An interrupted recovery (Ctrl-C,
SIGTERM) keeps the model of its last finished epoch in the run, and the training state of
that epoch on this machine: ``hwprune finetune --resume RUN_ID`` (:func:`resume_finetune`)
goes on from it to the result the uninterrupted run gives.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch

from agents.app.finalize import (
    log_pruned_model,
    logged_model_uri,
    recovery_recipe,
    recovery_saver,
    saved_recovery,
    test_accuracy,
)
from agents.checks import (
    MAX_FINETUNE_EPOCHS,
    MAX_FINETUNE_STEPS,
    check_count,
    check_output_dir,
)
from core import defaults
from envs import TaskSpec, make_task
from envs.workloads.evaluation import TrainingState, bn_calibration_batches, reestimate_batchnorm
from envs.workloads.recovery import RecoveryRecipe, recover
from envs.workloads.safe_load import load_torch_file, torch_load_reason
from pruning import apply_masks, make_permanent
from pruning.export import read_manifest
from tracking import (
    check_experiment,
    check_store,
    discard_download,
    download_artifacts,
    experiment_name_of,
    run_state,
    search_run,
    state_dir,
)

BATCH_SIZE = 64


@dataclass(frozen=True)
class FinetuneResult:
    """Test accuracy before and after, per epoch, and where the result went."""

    run_id: str
    source: str
    before: float
    after: float
    per_epoch: list[float]
    """Test accuracy after each epoch this process trained (from ``first_epoch``)."""
    steps: int
    export_dir: Path | None
    model_uri: str | None = None
    """The logged MLflow model of the fine-tuned network (``runs:/RUN_ID/NAME``)."""
    first_epoch: int = 1
    """The epoch ``per_epoch`` starts at (a resumed run's epochs before are in the run)."""


class FinetuneInterrupted(KeyboardInterrupt):
    """A recovery stopped by SIGINT or SIGTERM; its run is KILLED and keeps the model of
    the last finished epoch (``epochs_done``; 0: nothing was kept)."""

    def __init__(self, signum: int, run_id: str, epochs_done: int, epochs: int | None) -> None:
        super().__init__(signum)
        self.signum = signum
        self.run_id = run_id
        self.epochs_done = epochs_done
        self.epochs = epochs


@contextlib.contextmanager
def resolve_source(source: str) -> Iterator[tuple[Path, str | None]]:
    """An export directory for ``source`` (a directory, or a run id whose
    ``pruned_model`` is downloaded to a temporary folder removed afterwards), and the
    search run it came from."""
    path = Path(source)
    if path.is_dir():
        manifest = read_manifest(path)  # FileNotFoundError if it is not an export
        yield path, manifest.get("run_id")
        return
    check_store(writable=False)
    try:
        local = download_artifacts(source, "pruned_model")
    except OSError as exc:
        raise KeyError(f"run {source!r} has no pruned_model to fine-tune ({exc})") from exc
    try:
        read_manifest(local)
        yield local, source
    finally:
        discard_download(local)


def _task_spec(manifest: dict[str, Any]) -> TaskSpec:
    """The task an export was pruned for (older exports: from the policy's names)."""
    stored = manifest.get("task")
    if stored:
        return TaskSpec(**stored)
    policy = manifest.get("policy", {})
    try:
        return TaskSpec(model=policy["model"], scheme=policy["scheme"], hardware=policy["hardware"])
    except KeyError as exc:
        raise ValueError(f"the export's manifest does not name its task ({exc})") from None


def run_finetune(
    source: str,
    *,
    epochs: int | None = 1,
    steps: int | None = None,
    lr: float = defaults.RECOVERY_LR,
    seed: int = 0,
    distill: bool = False,
    experiment: str | None = None,
    export_dir: str | Path | None = None,
    register: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FinetuneResult:
    """Recover the pruned model of ``source`` (run id or export dir); see the module doc.

    ``steps`` SGD steps of batch 64, or ``epochs`` passes over the training split when
    ``steps`` is None; ``distill`` distils from the dense model. ``on_total`` is told the
    number of steps once it is known; ``progress`` is called after every step with 1.
    ``FinetuneInterrupted`` after SIGINT/SIGTERM, the run KILLED with the last finished
    epoch's model.
    """
    if steps is None:
        check_count("epochs", epochs, minimum=1, maximum=MAX_FINETUNE_EPOCHS)
    else:
        check_count("steps", steps, minimum=1, maximum=MAX_FINETUNE_STEPS)
    settings = {
        "epochs": 1 if epochs is None else epochs,
        "steps": steps,
        "lr": lr,
        "batch_size": BATCH_SIZE,
        "distill": distill,
        "seed": seed,
    }
    # The other ranges (lr, seed, ...) are the recipe's: checked before any download or load.
    RecoveryRecipe(**settings)
    if export_dir is not None:  # before the source is read or anything trains
        check_output_dir(export_dir, "export directory", may_exist=False)
    with resolve_source(source) as (src, source_run):
        manifest, spec, state = _read_source(src)
        if experiment is None:
            experiment = _source_experiment(source_run) or "hwprune"
        check_store()
        check_experiment(experiment)
        task = make_task(spec)
        recipe = recovery_recipe(task, **settings)
        if on_total is not None:
            on_total(recipe.total_steps(len(task.workload.train)))
        return _finetune(
            task, spec, manifest, state, source, source_run, experiment,
            recipe=recipe, epochs=None if steps is not None else epochs,
            export_dir=export_dir, register=register, progress=progress,
        )  # fmt: skip


def resume_finetune(
    run_id: str,
    *,
    export_dir: str | Path | None = None,
    register: str | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FinetuneResult:
    """Continue an interrupted fine-tune run in place from its last finished epoch.

    The run's own source and recipe; the model, momentum, schedule and batch order of its
    last finished epoch (kept on the machine that ran it, :func:`finetune_state_file`),
    so the result is the uninterrupted run's. ``KeyError`` for an unknown run,
    ``ValueError`` for one that is no fine-tune, is finished, or kept no epoch here.
    """
    from agents.app.search import RESUMABLE

    if export_dir is not None:
        check_output_dir(export_dir, "export directory", may_exist=False)
    check_store()
    try:
        run = mlflow.tracking.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise KeyError(f"no MLflow run {run_id!r} in the tracking store") from exc
    if run.data.tags.get("hwprune.kind") != "finetune":
        raise ValueError(
            f"run {run_id!r} is not a fine-tune run (a search resumes with "
            f"`hwprune search --resume {run_id}`)"
        )
    if run.info.status not in RESUMABLE:
        raise ValueError(
            f"run {run_id!r} is {run.info.status}; only a {', '.join(RESUMABLE)} fine-tune "
            "can be resumed"
        )
    _, stored, _, _ = run_state(run_id)
    if not isinstance(stored.get("recovery"), dict) or "source" not in stored:
        raise ValueError(f"run {run_id!r} records no recovery recipe and source; it cannot resume")
    recipe = RecoveryRecipe(**stored["recovery"])
    path = finetune_state_file(run_id)
    start = saved_recovery(path, stored["source"], recipe)
    if start is None:
        raise ValueError(
            f"run {run_id!r} kept no finished epoch on this machine ({str(path)!r}); start "
            f"a new one: hwprune finetune {stored['source']}"
        )
    with resolve_source(stored["source"]) as (src, source_run):
        manifest, spec, state = _read_source(src)
        task = make_task(spec)
        if on_total is not None:
            on_total(recipe.total_steps(len(task.workload.train)) - start.step)
        return _finetune(
            task, spec, manifest, state, stored["source"], source_run,
            experiment_name_of(run_id), recipe=recipe, epochs=stored.get("epochs"),
            export_dir=export_dir, register=register, progress=progress,
            resume=(run_id, start),
        )  # fmt: skip


def finetune_state_file(run_id: str) -> Path:
    """Where fine-tune run ``run_id`` keeps the state of its last finished epoch."""
    return state_dir() / run_id / "recovery" / "finetune.pt"


def _read_source(src: Path) -> tuple[dict[str, Any], TaskSpec, dict[str, torch.Tensor]]:
    """An export's manifest, the task it was pruned for and its weights (``ValueError``
    for weights that are not a plain state dict)."""
    manifest = read_manifest(src)
    weights = src / "state_dict.pt"
    try:
        state = load_torch_file(weights)
    except Exception as exc:  # a foreign or crafted file: refused, never run
        raise ValueError(
            f"cannot load {str(weights)!r} as a state_dict: {torch_load_reason(exc)}"
        ) from exc
    return manifest, _task_spec(manifest), state


def _source_experiment(run_id: str | None) -> str | None:
    return None if run_id is None else experiment_name_of(run_id)


def _finetune(
    task: Any,
    spec: TaskSpec,
    manifest: dict[str, Any],
    state: dict[str, torch.Tensor],
    source: str,
    source_run: str | None,
    experiment: str,
    *,
    recipe: RecoveryRecipe,
    epochs: int | None,
    export_dir: str | Path | None,
    register: str | None,
    progress: Callable[[int], None] | None,
    resume: tuple[str, TrainingState] | None = None,
) -> FinetuneResult:
    import copy

    from agents.app.search import SearchInterrupted, signals_interrupt

    model = copy.deepcopy(task.workload.model).cpu()
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"the export's weights do not fit workload {spec.model!r}: {str(exc).splitlines()[0]}"
        ) from None
    # The structure to hold: every pruned weight of the prunable layers stays zero.
    masks = {
        f"{layer.name}.weight": model.get_submodule(layer.name).weight != 0 for layer in task.layers
    }
    apply_masks(model, masks)
    train = task.workload.train
    total = recipe.total_steps(len(train))
    policy = dict(manifest.get("policy", {}))
    tags = {"hwprune.kind": "finetune", "hwprune.source": source}
    if source_run is not None:
        tags["mlflow.parentRunId"] = source_run  # shown under its search in the UI
    name = f"finetune-{policy.get('scheme', spec.scheme)}-{policy.get('hardware', spec.hardware)}"
    resume_id, start = resume if resume is not None else (None, None)
    with search_run(experiment, run_name=name, tags=tags, resume_run_id=resume_id) as run:
        before = test_accuracy(task, model)
        if start is None:
            run.log_config(
                {"source": source, "source_run": source_run, "task": spec.as_dict(),
                 "steps": total, "epochs": epochs, "recovery": recipe.as_dict(),
                 "lr": recipe.lr, "seed": recipe.seed, "batch_size": recipe.batch_size},
                command=None,
            )  # fmt: skip
            run.log_metrics({"finetune/test_accuracy": before}, step=0)
        per_epoch_acc: list[float] = []
        kept: dict[str, Any] = {} if start is None else {"epoch": start.epoch}
        state_file = finetune_state_file(run.run_id)

        def on_epoch(epoch: int, step: int) -> None:
            acc = test_accuracy(task, model)
            per_epoch_acc.append(acc)
            run.log_metrics({"finetune/test_accuracy": acc}, step=epoch)
            kept.update(epoch=epoch, step=step, state=copy.deepcopy(model.state_dict()))

        step_done = None if progress is None else (lambda _step: progress(1))
        try:
            with signals_interrupt():
                recover(model, train, recipe, teacher=task.workload.model,
                        on_step=step_done, on_epoch=on_epoch, start=start,
                        save_state=recovery_saver(state_file, source, recipe))  # fmt: skip
        except SearchInterrupted as exc:
            if "state" in kept:  # quick: no test evaluation, one export of the last epoch
                model.load_state_dict(kept["state"])
                reestimate_batchnorm(model, bn_calibration_batches(train))
                make_permanent(model).eval()
                policy.update(interrupted_after_epochs=kept["epoch"])
                log_pruned_model(
                    run, task, model, policy=policy,
                    finetune_steps=int(manifest.get("finetune_steps") or 0) + kept["step"],
                    spec=spec, extra={"finetuned_from": source}, log_model=False,
                )  # fmt: skip
            raise FinetuneInterrupted(
                exc.signum, run.run_id, int(kept.get("epoch", 0)), epochs
            ) from None
        make_permanent(model).eval()
        shutil.rmtree(state_file.parent, ignore_errors=True)  # finished: nothing to resume
        after = test_accuracy(task, model)
        # best/* as a search logs them: fine-tunes sort and compare beside searches.
        run.log_metrics(
            {
                "before/test_accuracy": before,
                "after/test_accuracy": after,
                "steps": total,
                "best/test_accuracy": after,
                **{
                    f"best/{k}": float(policy[k])
                    for k in ("cost_ratio", "density", "holdout_accuracy")
                    if isinstance(policy.get(k), (int, float))
                },
            }
        )
        policy.update(test_accuracy=after, test_accuracy_before_finetune=before)
        run.log_json(policy, "best_policy.json")
        final = log_pruned_model(
            run,
            task,
            model,
            policy=policy,
            finetune_steps=int(manifest.get("finetune_steps") or 0) + total,
            export_dir=export_dir,
            register=register,
            tags={k: str(v) for k, v in policy.items() if isinstance(v, (str, int, float))},
            spec=spec,
            extra={"finetuned_from": source, "recovery": recipe.as_dict()},
        )
        return FinetuneResult(
            run_id=run.run_id,
            source=source,
            before=before,
            after=after,
            per_epoch=per_epoch_acc,
            first_epoch=1 if start is None else start.epoch + 1,
            steps=total,
            export_dir=final,
            model_uri=logged_model_uri(run.run_id, task),
        )
