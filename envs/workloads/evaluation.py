"""Accuracy, BatchNorm re-estimation and (fine-)tuning, shared by proxies, benchmarks, reports.

Datasets may be :class:`envs.workloads.data.ImageSplit` (vectorised fast path), any map-style
``Dataset`` of ``(image, label)`` (a ``DataLoader`` is used), or a pair of tensors
``(images, labels)`` already processed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from envs.workloads.data import ImageSplit

DataLike = Dataset | tuple[torch.Tensor, torch.Tensor]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``/``"cuda[:i]"`` as given.

    Raises ``ValueError`` for an unknown name, or ``"cuda"`` on a machine without CUDA.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}; valid choices: {', '.join(DEVICES)}")


def _length(data: DataLike) -> int:
    return int(data[1].shape[0]) if isinstance(data, tuple) else len(data)  # type: ignore[arg-type]


def _take(data: DataLike, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple):
        return data[0][idx], data[1][idx]
    if isinstance(data, ImageSplit):
        return data.batch(idx)
    items = [data[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def iter_batches(
    data: DataLike,
    *,
    batch_size: int = 256,
    indices: torch.Tensor | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` batches of ``data`` in order (or of ``indices``), on CPU."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = torch.arange(_length(data)) if indices is None else indices
    if isinstance(data, (tuple, ImageSplit)):
        for start in range(0, len(idx), batch_size):
            yield _take(data, idx[start : start + batch_size])
        return
    # Generic datasets (ImageFolder) decode from disk: let a DataLoader parallelise that.
    sub = torch.utils.data.Subset(data, idx.tolist())
    yield from DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def dataset_tensors(
    data: DataLike, *, limit: int | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` (default: all) processed images and labels as two tensors."""
    n = _length(data) if limit is None else min(limit, _length(data))
    xs, ys = zip(*iter_batches(data, indices=torch.arange(n), batch_size=512), strict=True)
    dev = resolve_device(device)
    return torch.cat(xs).to(dev), torch.cat(ys).to(dev)


def accuracy(
    model: nn.Module,
    dataset: DataLike,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``model`` on ``dataset``, in eval and inference mode.

    The model's training flag is restored afterwards; the model must already be on
    ``device``.
    """
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        with torch.inference_mode():
            for x, y in iter_batches(dataset, batch_size=batch_size):
                pred = model(x.to(dev, non_blocking=True)).argmax(1)
                correct += int((pred.cpu() == y).sum())
                total += int(y.shape[0])
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("cannot compute accuracy on an empty dataset")
    return correct / total


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_calibration_batches(
    train: DataLike, *, n_batches: int = 2, batch_size: int = 128, seed: int = 0
) -> list[torch.Tensor]:
    """The fixed training batches BatchNorm statistics are re-estimated on (CPU tensors).

    ``n_batches`` batches of ``batch_size`` images (at most the whole split) drawn without
    replacement by a permutation seeded with ``seed``. The accuracy proxies and the final
    pruned model use the same ones, so the exported network is the one the search scored.
    """
    n_train = _length(train)
    if n_train == 0:
        raise ValueError("cannot draw BatchNorm batches from an empty training split")
    # A training split smaller than one batch gives one batch of all of it.
    batch_size = min(batch_size, n_train)
    take = min(n_batches * batch_size, n_train - n_train % batch_size)
    idx = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))[:take]
    return [x for x, _ in iter_batches(train, batch_size=batch_size, indices=idx)]


def reestimate_batchnorm(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple[torch.Tensor, ...]],
    *,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Re-estimate BatchNorm running statistics on ``batches`` (EagleEye's adaptive BN).

    Resets every BN layer's statistics, switches them to a cumulative average
    (``momentum=None``) so every batch counts equally, forwards the batches in train
    mode without gradients, then restores each layer's momentum and returns the model in
    eval mode. ``batches`` yields input tensors or ``(inputs, labels)`` pairs. A model
    without BatchNorm is returned unchanged (in eval mode).
    """
    bns = batchnorm_layers(model)
    if not bns:
        return model.eval()
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    seen = 0
    try:
        with torch.no_grad():
            for b in batches:
                x = b[0] if isinstance(b, (tuple, list)) else b
                model(x.to(dev, non_blocking=True))
                seen += 1
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.eval()
    if seen == 0:
        raise ValueError("reestimate_batchnorm needs at least one batch")
    return model


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of the batch ``x`` by up to ``pad`` pixels each way (pad and crop).

    The border is filled with each image's least value (the background of normalised
    Fashion-MNIST or digits), not zero, which after normalisation is a mid grey.
    """
    n, c, h, w = x.shape
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    padded = fill.expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator)
    rows = dy + torch.arange(h).view(1, h, 1)
    cols = dx + torch.arange(w).view(1, 1, w)
    # Advanced indices around a slice put their broadcast dims first: (n, h, w, c).
    out = padded[torch.arange(n).view(n, 1, 1), :, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()


def distillation_loss(
    logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T**2 * KL(softmax(teacher / T) || softmax(student / T))`` on the batch ``x``
    (Hinton et al. 2015; the ``T**2`` keeps gradients comparable across temperatures).
    The teacher runs in eval mode without gradients."""
    with torch.no_grad():
        target = F.log_softmax(teacher(x) / temperature, dim=1)
    student = F.log_softmax(logits / temperature, dim=1)
    kl = F.kl_div(student, target, reduction="batchmean", log_target=True)
    return kl * temperature**2


@dataclass(frozen=True)
class TrainingState:
    """Where a :func:`finetune` stands after a whole pass: enough to continue it exactly.

    The model's state dict (with ``torch.nn.utils.prune``'s ``*_orig`` and ``*_mask``),
    the optimiser's momentum, the schedule's position and the batch generator's state, so a
    run resumed from it draws the same batches and takes the same steps as one that was
    never stopped. ``as_dict``/``from_dict`` give plain tensors and numbers, which
    ``torch.load(..., weights_only=True)`` reads back.
    """

    steps: int
    """The run's total optimiser steps (its cosine schedule depends on them)."""
    step: int
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    generator: torch.Tensor

    def as_dict(self) -> dict[str, Any]:
        """Plain containers, tensors and numbers (for ``torch.save``)."""
        return {
            "steps": self.steps,
            "step": self.step,
            "epoch": self.epoch,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "generator": self.generator,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingState:
        """Inverse of :meth:`as_dict`; ``KeyError``/``TypeError`` for another dict."""
        return cls(
            steps=int(d["steps"]),
            step=int(d["step"]),
            epoch=int(d["epoch"]),
            model=dict(d["model"]),
            optimizer=dict(d["optimizer"]),
            scheduler=None if d["scheduler"] is None else dict(d["scheduler"]),
            generator=d["generator"],
        )


def finetune(
    model: nn.Module,
    train: DataLike,
    *,
    steps: int,
    lr: float = 0.01,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "constant",
    label_smoothing: float = 0.0,
    hflip: bool = False,
    crop: int = 0,
    seed: int = 0,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    teacher: nn.Module | None = None,
    distill_alpha: float = 0.9,
    temperature: float = 4.0,
    start: TrainingState | None = None,
    save_state: Callable[[TrainingState], None] | None = None,
) -> nn.Module:
    """Train ``model`` for ``steps`` SGD steps on ``train``; returns it in eval mode.

    ``on_epoch(epoch, step)`` is called after each pass over the data and after the last
    step (the model in eval mode during the call, back in training mode after).

    Batches are drawn epoch by epoch from a permutation seeded by ``seed``, so the same
    call gives the same result. ``schedule`` is ``"constant"`` or ``"cosine"`` (decay to
    0 over ``steps``). ``hflip`` mirrors a random half of every batch (augmentation for
    mirror-symmetric classes); ``crop`` shifts every image by up to that many pixels each
    way (pad-and-crop, padded with the image's background, i.e. its least value).
    ``on_step(step)`` is called after every optimiser step (for progress bars). With a
    ``teacher`` (the dense model, say), the loss is Hinton's knowledge distillation:
    ``distill_alpha`` times ``temperature**2`` times the KL divergence of the softened
    outputs, plus ``1 - distill_alpha`` times the cross-entropy. Parameters reparametrised
    by ``torch.nn.utils.prune`` (``*_orig`` times a ``*_mask`` buffer) receive zero
    gradient where masked, so pruned weights stay pruned: fine-tuning with masks held
    fixed needs nothing special.

    ``save_state(state)`` is given a :class:`TrainingState` after every whole pass;
    ``start`` continues from one (same ``steps`` and settings, ``model`` built the same
    way, with the same masks), and the result is the uninterrupted run's.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}; valid choices: constant, cosine")
    if crop < 0:
        raise ValueError(f"crop must be >= 0 pixels, got {crop}")
    if steps == 0:
        return model.eval()
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
    )
    sched = (
        torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
        if schedule == "cosine"
        else None
    )
    gen = torch.Generator().manual_seed(seed)
    n = _length(train)
    if n == 0:
        raise ValueError("cannot fine-tune on an empty dataset")
    per_epoch = max(1, n // batch_size)  # drop the ragged last batch: BN needs > 1 sample
    step = epoch = 0
    if start is not None:
        if start.steps != steps:
            raise ValueError(f"the saved state is of a {start.steps}-step run, not {steps}")
        model.load_state_dict(start.model)
        opt.load_state_dict(start.optimizer)
        if sched is not None and start.scheduler is not None:
            sched.load_state_dict(start.scheduler)
        gen.set_state(start.generator)
        step, epoch = start.step, start.epoch
    model.train()
    while step < steps:
        perm = torch.randperm(n, generator=gen)
        for b in range(per_epoch):
            if step >= steps:
                break
            x, y = _take(train, perm[b * batch_size : (b + 1) * batch_size])
            if hflip:
                flip = torch.rand(x.shape[0], generator=gen) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            if crop:
                x = random_shift(x, crop, gen)
            x = x.to(dev, non_blocking=True)
            logits = model(x)
            loss = F.cross_entropy(
                logits, y.to(dev, non_blocking=True), label_smoothing=label_smoothing
            )
            if teacher is not None:
                loss = (1 - distill_alpha) * loss + distill_alpha * distillation_loss(
                    logits, teacher, x, temperature
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
            if on_step is not None:
                on_step(step)
        epoch += 1
        if save_state is not None:
            save_state(
                TrainingState(
                    steps=steps,
                    step=step,
                    epoch=epoch,
                    model={k: v.detach().clone() for k, v in model.state_dict().items()},
                    # Copies: the live momentum buffers move on with the next step.
                    optimizer=copy.deepcopy(opt.state_dict()),
                    scheduler=None if sched is None else copy.deepcopy(sched.state_dict()),
                    generator=gen.get_state(),
                )
            )
        if on_epoch is not None:
            on_epoch(epoch, step)
            model.train()
    return model.eval()
