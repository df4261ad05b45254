"""Turn a searched policy into a real pruned network and measure it on the test split."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs import PruningTask, TaskSpec
from envs.proxies.builtin import torch_threads
from envs.proxies.headfit import HeadRefit
from envs.workloads.evaluation import (
    TrainingState,
    accuracy,
    bn_calibration_batches,
    finetune,
    reestimate_batchnorm,
)
from envs.workloads.recovery import RecoveryRecipe, recover
from envs.workloads.safe_load import load_torch_file
from pruning import apply_masks, make_permanent
from pruning.export import export_pruned
from tracking import SearchRun


def masked_model(task: PruningTask, choice: Sequence[int]) -> nn.Module:
    """A copy of the workload's model with ``choice``'s masks applied (reparametrised, not
    yet permanent), BatchNorm re-estimated and the classifier head re-fitted on the same
    fixed training batches as the ``holdout`` proxy's defaults: the network that proxy
    scored."""
    model = copy.deepcopy(task.workload.model).cpu()
    batches = bn_calibration_batches(task.workload.train)
    head = HeadRefit.from_model(model, batches)  # captured while still dense
    apply_masks(model, task.masks(choice))
    reestimate_batchnorm(model, batches)
    if head is not None:
        head.apply(model)
    return model


def pruned_model(
    task: PruningTask,
    choice: Sequence[int],
    *,
    finetune_steps: int = 0,
    finetune_lr: float = 0.01,
    seed: int = 0,
) -> nn.Module:
    """:func:`masked_model` with its masks made permanent, after an optional short
    fine-tune (``finetune_steps`` constant-rate SGD steps, masks fixed)."""
    model = masked_model(task, choice)
    if finetune_steps > 0:
        finetune(model, task.workload.train, steps=finetune_steps, lr=finetune_lr, seed=seed)
        reestimate_batchnorm(model, bn_calibration_batches(task.workload.train))
    return make_permanent(model).eval()


def recovery_recipe(task: PruningTask, **settings: Any) -> RecoveryRecipe:
    """A :class:`RecoveryRecipe` with the workload's own augmentation (the flips and
    shifts it was trained with) under ``settings``."""
    trained = task.workload.meta.get("recipe") or {}
    augment = {k: trained[k] for k in ("hflip", "crop") if k in trained}
    return RecoveryRecipe(**{**augment, **settings})


@dataclass(frozen=True)
class Recovered:
    """A recovered pruned model (masks permanent) and its test accuracy before and after."""

    model: nn.Module
    before: float
    after: float


def recovered_model(
    task: PruningTask,
    choice: Sequence[int],
    recipe: RecoveryRecipe,
    *,
    on_step: Callable[[int], None] | None = None,
    states: Path | None = None,
) -> Recovered:
    """Prune by ``choice``, test, recover by ``recipe`` (distilled from the workload's dense
    model if it says so), test again; masks made permanent.

    With ``states`` (a folder), the recovery's state is saved there after every epoch
    (:func:`recovery_state_file`) and a recovery of the same policy and recipe found there
    continues from its last finished epoch: an interrupted search loses at most one epoch
    of its recovery, and its result is the uninterrupted one."""
    model = masked_model(task, choice)
    before = test_accuracy(task, model)
    path = None if states is None else recovery_state_file(states, choice, recipe)
    recover(
        model, task.workload.train, recipe, teacher=task.workload.model, on_step=on_step,
        masks_at=gradual_masks(task, choice) if recipe.gradual else None,
        start=None if path is None else saved_recovery(path, choice, recipe),
        save_state=None if path is None else recovery_saver(path, choice, recipe),
    )  # fmt: skip
    make_permanent(model).eval()
    return Recovered(model=model, before=before, after=test_accuracy(task, model))


def recovery_states(run: SearchRun) -> Path:
    """The folder where a search run's recoveries keep their epochs: beside its episode
    journal, on the machine that runs it, until the run has finished."""
    return run.journal.path.parent / "recovery"


def recovery_state_file(states: Path, choice: Sequence[int], recipe: RecoveryRecipe) -> Path:
    """Where the recovery of ``choice`` by ``recipe`` keeps its state in ``states``."""
    key = json.dumps([_plain_key(choice), recipe.as_dict()], sort_keys=True)
    return Path(states) / f"recovery-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _plain_key(key: Any) -> Any:
    """A recovery's identity as stored: a policy's choice as plain ints, else as given."""
    return [int(c) for c in key] if isinstance(key, (list, tuple)) else key


def saved_recovery(path: Path, key: Any, recipe: RecoveryRecipe) -> TrainingState | None:
    """The state saved at ``path`` by the recovery of ``key`` (a policy's choice, a
    fine-tune's source) by ``recipe``, or None: no file, another key or recipe, or a file
    that cannot be read (the recovery then starts anew)."""
    if not path.is_file():
        return None
    try:
        saved = load_torch_file(path)
        if saved["key"] != _plain_key(key) or saved["recipe"] != recipe.as_dict():
            return None
        return TrainingState.from_dict(saved["state"])
    except Exception:  # a damaged state costs the epochs it held, never the recovery
        return None


def recovery_saver(path: Path, key: Any, recipe: RecoveryRecipe) -> Callable[[TrainingState], None]:
    """``save_state`` for :func:`envs.workloads.recovery.recover`: each epoch's state of
    the recovery of ``key`` by ``recipe``, written to ``path`` whole (a temporary file
    renamed over it), for :func:`saved_recovery` to read back."""
    doc = {"key": _plain_key(key), "recipe": recipe.as_dict()}

    def save(state: TrainingState) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({**doc, "state": state.as_dict()}, tmp)
        os.replace(tmp, path)

    return save


def gradual_masks(
    task: PruningTask, choice: Sequence[int]
) -> Callable[[float], dict[str, torch.Tensor]]:
    """The masks of a gradual recovery towards ``choice``: at ramp progress ``t`` each
    layer keeps density ``d + (1 - d)(1 - t)^3`` (Zhu and Gupta's cubic schedule, ``d``
    its density under ``choice``), snapped to the scheme's level at or below and never below
    ``choice``'s own level, so ``t = 1`` gives ``choice``'s masks exactly: the searched
    policy, its cost and its export are those of the one-shot recovery."""
    final = [int(j) for j in choice]
    target = {d.name: float(d.levels[j]) for d, j in zip(task.decisions, final, strict=True)}
    cache: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}

    def at(t: float) -> dict[str, torch.Tensor]:
        keep = (1.0 - min(max(t, 0.0), 1.0)) ** 3
        want = {name: d + (1.0 - d) * keep for name, d in target.items()}
        snapped = task.choice_for_densities(want)
        step = tuple(max(j, f) for j, f in zip(snapped, final, strict=True))
        if step not in cache:
            cache[step] = task.masks(step)
        return cache[step]

    return at


def recovery_threads() -> int:
    """Torch threads of a recovery: ``OMP_NUM_THREADS`` when set (a Ray worker's share),
    else every usable CPU. Recovery is one batched training job, which scales with cores,
    unlike a search's evaluations of small networks (``threads``, 1 by default)."""
    from agents.checks import usable_cpus

    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return usable_cpus()


def delivered_models(
    task: PruningTask,
    choices: Mapping[str, Sequence[int]],
    *,
    finetune_steps: int = 0,
    recipe: RecoveryRecipe | None = None,
    seed: int = 0,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    states: Path | None = None,
) -> dict[str, Recovered]:
    """The model a search delivers for each labelled policy (``"best"``, ``"uniform"``,
    a front point...): recovered by ``recipe`` when given (``before`` is its test accuracy
    right after pruning; equal choices are recovered once), else pruned and fine-tuned
    for ``finetune_steps`` (``before`` is NaN). ``after`` is the delivered model's test
    accuracy. ``progress(label, total_steps)`` gives a per-step callback for recoveries;
    ``states`` is the folder where they keep their epochs (:func:`recovered_model`)."""
    out: dict[str, Recovered] = {}
    done: dict[tuple[int, ...], Recovered] = {}
    for label, choice in choices.items():
        key = tuple(int(c) for c in choice)
        if key in done:
            out[label] = done[key]
            continue
        if recipe is not None:
            total = recipe.total_steps(len(task.workload.train))
            step = None if progress is None else progress(label, total)
            with torch_threads(max(torch.get_num_threads(), recovery_threads())):
                result = recovered_model(task, choice, recipe, on_step=step, states=states)
        else:
            model = pruned_model(task, choice, finetune_steps=finetune_steps, seed=seed)
            result = Recovered(model, float("nan"), test_accuracy(task, model))
        out[label] = done[key] = result
    return out


def test_accuracy(task: PruningTask, model: nn.Module) -> float:
    """Accuracy on the workload's test split (final reports only)."""
    with torch.inference_mode():
        return accuracy(model, task.workload.test)


def log_pruned_model(
    run: SearchRun,
    task: PruningTask,
    model: nn.Module,
    *,
    policy: dict[str, Any],
    finetune_steps: int,
    export_dir: str | Path | None = None,
    register: str | None = None,
    tags: dict[str, str] | None = None,
    spec: TaskSpec | None = None,
    extra: dict[str, Any] | None = None,
    artifact_path: str = "pruned_model",
    log_model: bool = True,
) -> Path | None:
    """Export ``model`` in every format into the run (``pruned_model/``), log it as an
    MLflow pyfunc model (named ``logged_model_name``: workload-scheme-hardware) when its
    data says how raw images are prepared and ``log_model`` is on, copy
    the export to ``export_dir`` and register the model as ``register``.

    ``spec`` (the task's settings) goes into the manifest, so that the export alone
    rebuilds its task (``hwprune finetune DIR``); ``extra`` adds manifest entries. The
    export goes to the run's ``artifact_path``.
    Returns the copy's path (None without ``export_dir``).
    """
    test = task.workload.test
    preprocessing = test.preprocessing() if hasattr(test, "preprocessing") else None
    net = type(task.workload.model)
    manifest = {
        "run_id": run.run_id,
        "policy": policy,
        "finetune_steps": finetune_steps,
        "architecture": {
            "workload": task.workload.name,
            "class": f"{net.__module__}.{net.__qualname__}",
            "num_classes": task.workload.num_classes,
        },
        "preprocessing": preprocessing,
        "task": None if spec is None else spec.as_dict(),
        "workload_meta": {k: v for k, v in task.workload.meta.items() if _plain(v)},
        **(extra or {}),
    }
    tmp = Path(tempfile.mkdtemp(prefix="hwprune-export-"))
    try:
        exported = export_pruned(
            model,
            task.workload.example_input,
            tmp / "pruned_model",
            scheme=task.scheme,
            layers=task.layers,
            manifest=manifest,
        )
        run.log_dir(exported, artifact_path)
        if preprocessing is not None and log_model:
            run.log_model(
                exported,
                input_example=test.raw(2),
                name=logged_model_name(task),
                register_as=register,
                tags=tags,
            )
        elif register is not None:
            raise ValueError(f"workload {task.workload.name!r} has no raw-image data to register")
        if export_dir is None:
            return None
        final_dir = Path(export_dir)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(exported, final_dir)
        return final_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def logged_model_name(task: PruningTask) -> str:
    """The MLflow model's name in its run: ``WORKLOAD-SCHEME-HARDWARE`` (e.g.
    ``fashion-vgg-pattern-accel-kang-16``), so ``runs:/RUN_ID/NAME`` says what it is."""
    raw = f"{task.workload.name}-{task.scheme.name}-{task.hardware.name}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)


def logged_model_uri(run_id: str, task: PruningTask) -> str | None:
    """``runs:/RUN_ID/NAME`` of the model ``log_pruned_model`` logs for ``task``; None
    where its data cannot say how raw images are prepared (no model is logged)."""
    test = task.workload.test
    if getattr(test, "preprocessing", lambda: None)() is None:
        return None
    return f"runs:/{run_id}/{logged_model_name(task)}"


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None
