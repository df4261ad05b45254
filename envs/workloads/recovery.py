"""Recovery: masked retraining of a pruned network, the step that turns a policy into a result.

A pruned network scores far below what it reaches after a few epochs of training with its
masks held fixed (8-14 points on an over-parameterised VGG at 10% density). Recovery is that
training: SGD with momentum on a cosine schedule, the pruned weights held at zero by the
``torch.nn.utils.prune`` reparametrisation, optionally distilled from the dense model, then
BatchNorm statistics re-estimated. ``hwprune finetune`` and ``hwprune search
--finetune-epochs`` both run :func:`recover`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from core import defaults
from core.params import Param, Schema
from envs.workloads.data import ImageSplit
from envs.workloads.evaluation import (
    DataLike,
    TrainingState,
    bn_calibration_batches,
    finetune,
    reestimate_batchnorm,
)

#: The most recovery epochs a recipe accepts (days of 2-core time on fashion-vgg); the
#: CLI's bound is ``agents.checks.MAX_FINETUNE_EPOCHS``, the same (a test holds them equal).
MAX_EPOCHS = 1000
#: The most optimiser steps a recovery takes (a bound against typos such as 1e15); the
#: CLI's is ``agents.checks.MAX_FINETUNE_STEPS``, the same.
MAX_STEPS = 1_000_000


#: The recipe's settings, each stated once (``core.params``): type, default and range.
RECOVERY_PARAMS = Schema(
    (
        Param("epochs", "int", 1, low=0, high=MAX_EPOCHS),
        Param("steps", "int", None, low=0, high=MAX_STEPS, nullable=True),
        Param("lr", "float", defaults.RECOVERY_LR, low=0.0, high=10.0, low_open=True),
        Param("batch_size", "int", 64, low=1, high=65_536),
        Param("weight_decay", "float", 5e-4, low=0.0, high=1.0),
        Param("distill", "bool", False),
        Param("distill_alpha", "float", 0.9, low=0.0, high=1.0),
        Param("temperature", "float", 4.0, low=0.0, high=100.0, low_open=True),
        Param("hflip", "bool", False),
        Param("crop", "int", 0, low=0, high=64),
        # Below 1: the policy's own masks need steps too.
        Param("gradual", "float", 0.0, low=0.0, high=1.0, high_open=True),
        Param("seed", "int", 0, low=0, high=2**32 - 1),
    )
)


@dataclass(frozen=True)
class RecoveryRecipe:
    """How a pruned network is recovered.

    Attributes:
        epochs: passes over the training split (``steps`` wins when set).
        steps: optimiser steps instead of whole epochs (``None``: ``epochs``).
        lr: peak learning rate of the cosine schedule (SGD, Nesterov momentum 0.9). 0.005,
            a tenth of fashion-vgg's training peak: on its 1-of-9 pattern network (first
            conv dense) 3 epochs recovered 91.43% at 0.005, 91.14% at 0.002, and 1 epoch
            90.23% at 0.005, 89.63% at 0.01, 86.56% at 0.02.
        batch_size: images per step.
        weight_decay: L2 penalty.
        distill: distil from the dense model (Hinton's KD), weight ``distill_alpha`` at
            ``temperature``, besides the labels' cross-entropy.
        hflip, crop: augmentation (mirror-symmetric classes; pad-and-crop shifts in pixels).
        gradual: share of the steps over which the masks go from the dense network to the
            policy's, through the scheme's levels on Zhu and Gupta's cubic schedule
            (density ``d + (1 - d)(1 - t)^3`` at ramp progress ``t``); the rest trains under
            the policy's masks. 0: the policy's masks from the first step (one shot).
        seed: batch order and augmentation.
    """

    epochs: int = RECOVERY_PARAMS.default("epochs")
    steps: int | None = RECOVERY_PARAMS.default("steps")
    lr: float = RECOVERY_PARAMS.default("lr")
    batch_size: int = RECOVERY_PARAMS.default("batch_size")
    weight_decay: float = RECOVERY_PARAMS.default("weight_decay")
    distill: bool = RECOVERY_PARAMS.default("distill")
    distill_alpha: float = RECOVERY_PARAMS.default("distill_alpha")
    temperature: float = RECOVERY_PARAMS.default("temperature")
    hflip: bool = RECOVERY_PARAMS.default("hflip")
    crop: int = RECOVERY_PARAMS.default("crop")
    gradual: float = RECOVERY_PARAMS.default("gradual")
    seed: int = RECOVERY_PARAMS.default("seed")

    def __post_init__(self) -> None:
        checked = RECOVERY_PARAMS.check({k: getattr(self, k) for k in RECOVERY_PARAMS.names()})
        for name, value in checked.items():  # normalised: 1 -> 1.0 where a float is meant
            object.__setattr__(self, name, value)

    def total_steps(self, n_train: int) -> int:
        """Optimiser steps on a training split of ``n_train`` images."""
        if self.steps is not None:
            return int(self.steps)
        return int(self.epochs) * steps_per_epoch(n_train, self.batch_size)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (MLflow params, manifests)."""
        return asdict(self)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Steps of one pass (the ragged last batch is dropped: BatchNorm needs > 1 image)."""
    return max(1, n_train // batch_size)


def recover(
    model: nn.Module,
    train: DataLike,
    recipe: RecoveryRecipe,
    *,
    teacher: nn.Module | None = None,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    masks_at: Callable[[float], Mapping[str, torch.Tensor]] | None = None,
    start: TrainingState | None = None,
    save_state: Callable[[TrainingState], None] | None = None,
) -> nn.Module:
    """Recover the masked ``model`` in place by ``recipe``; returns it in eval mode.

    ``model`` carries ``torch.nn.utils.prune`` masks (they stay: call ``make_permanent``
    afterwards); its pruned weights get no gradient, so they stay zero. ``teacher`` is
    required when ``recipe.distill`` (the dense model). BatchNorm statistics are
    re-estimated on the fixed calibration batches afterwards. ``on_step(step)`` after
    every step; ``on_epoch(epoch, step)`` after every pass, the model in eval mode.

    ``masks_at(t)`` is required when ``recipe.gradual``: the masks at ramp progress ``t``
    in [0, 1] (parameter name -> keep mask; a masked parameter missing is dense), with
    ``masks_at(1)`` the model's own. They replace the model's masks in place
    :data:`GRADUAL_UPDATES` times over the ramp.

    ``save_state`` is given the training's state after every epoch and ``start``
    continues from one (``envs.workloads.evaluation.finetune``): an interrupted recovery
    resumed so ends exactly where the uninterrupted one would.
    """
    if recipe.distill and teacher is None:
        raise ValueError("recipe.distill needs the dense model as teacher")
    if recipe.gradual and masks_at is None:
        raise ValueError("recipe.gradual needs masks_at, the masks along the ramp")
    steps = recipe.total_steps(len(train) if isinstance(train, ImageSplit) else _n(train))
    if steps == 0:
        return model.eval()
    if teacher is not None and recipe.distill:
        teacher.eval()
    if recipe.gradual and masks_at is not None:
        # A resumed ramp's masks are in the saved model state.
        ramp = int(recipe.gradual * steps)
        on_step = _gradual(model, masks_at, ramp, on_step, initial=start is None)
    finetune(
        model,
        train,
        steps=steps,
        lr=recipe.lr,
        batch_size=recipe.batch_size,
        weight_decay=recipe.weight_decay,
        schedule="cosine",
        hflip=recipe.hflip,
        crop=recipe.crop,
        seed=recipe.seed,
        on_step=on_step,
        on_epoch=on_epoch,
        teacher=teacher if recipe.distill else None,
        distill_alpha=recipe.distill_alpha,
        temperature=recipe.temperature,
        start=start,
        save_state=save_state,
    )
    reestimate_batchnorm(model, bn_calibration_batches(train))
    return model.eval()


#: How many times a gradual recovery moves its masks along the ramp (Zhu and Gupta prune
#: every few hundred steps; 16 moves put the policy's levels 1/16 of the ramp apart).
GRADUAL_UPDATES = 16


def _set_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Copy ``masks`` into the model's ``weight_mask`` buffers (ones where one is missing)."""
    with torch.no_grad():
        for name, module in model.named_modules():
            buf = getattr(module, "weight_mask", None)
            if buf is None:
                continue
            new = masks.get(f"{name}.weight" if name else "weight")
            if new is None:
                buf.fill_(1)
            else:
                buf.copy_(new.to(buf.device, buf.dtype))


def _gradual(
    model: nn.Module,
    masks_at: Callable[[float], Mapping[str, torch.Tensor]],
    ramp: int,
    on_step: Callable[[int], None] | None,
    *,
    initial: bool = True,
) -> Callable[[int], None]:
    """Put the ramp's first masks on ``model`` (unless not ``initial``: a resumed
    recovery's model has its own); returns the step hook that moves them."""
    every = max(1, math.ceil(ramp / GRADUAL_UPDATES))
    if initial:
        _set_masks(model, masks_at(0.0))

    def step(done: int) -> None:
        if done % every == 0 or done == ramp:
            if done <= ramp:
                _set_masks(model, masks_at(min(1.0, done / ramp) if ramp else 1.0))
        if on_step is not None:
            on_step(done)

    if ramp == 0 and initial:
        _set_masks(model, masks_at(1.0))
    return step


def _n(train: DataLike) -> int:
    return int(train[1].shape[0]) if isinstance(train, tuple) else len(train)  # type: ignore[arg-type]
