"""Turn a searched policy into a real pruned network and measure it on the test split."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from envs import PruningTask
from envs.evaluation import accuracy, bn_calibration_batches, finetune, reestimate_batchnorm
from envs.headfit import HeadRefit
from pruning import apply_masks, make_permanent


def pruned_model(
    task: PruningTask,
    choice: Sequence[int],
    *,
    finetune_steps: int = 0,
    finetune_lr: float = 0.01,
    seed: int = 0,
) -> nn.Module:
    """A copy of the workload's model pruned by ``choice``, masks made permanent.

    BatchNorm statistics are re-estimated and the classifier head re-fitted on the same
    fixed training batches as the ``holdout`` proxy's defaults (so without fine-tuning
    this is the network that proxy scored); an optional short fine-tune starts from there
    and keeps the masks fixed.
    """
    model = copy.deepcopy(task.workload.model).cpu()
    batches = bn_calibration_batches(task.workload.train)
    head = HeadRefit.from_model(model, batches)  # captured while still dense
    apply_masks(model, task.masks(choice))
    reestimate_batchnorm(model, batches)
    if head is not None:
        head.apply(model)
    if finetune_steps > 0:
        finetune(model, task.workload.train, steps=finetune_steps, lr=finetune_lr, seed=seed)
        reestimate_batchnorm(model, batches)
    return make_permanent(model).eval()


def test_accuracy(task: PruningTask, model: nn.Module) -> float:
    """Accuracy on the workload's test split (final reports only)."""
    with torch.inference_mode():
        return accuracy(model, task.workload.test)
