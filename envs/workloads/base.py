"""What a search prunes: a trained model with its fixed data splits."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from core import Registry


@dataclass
class Workload:
    """A trained network and the data splits a search uses.

    Attributes:
        name: registry name (``"digits-cnn"``).
        model: the trained network, in eval mode, on CPU.
        example_input: one batch (batch size 1) of the input shape, for inspection/export.
        train: training split; BatchNorm re-estimation and fine-tuning draw from it.
        holdout: split held out of the training data; the search reward is scored on it.
        test: the test split; used only for final reports.
        num_classes: number of output classes.
        meta: provenance (recipe, cache key, measured test accuracy...).
        score_limit: holdout images the accuracy proxies score by default (None: all);
            an explicit ``holdout_limit`` proxy parameter overrides it.
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor
    train: Dataset
    holdout: Dataset
    test: Dataset
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)
    score_limit: int | None = None


WORKLOADS: Registry[Workload] = Registry("model")


def weights_digest(model: nn.Module) -> str:
    """Hex sha256 of ``model``'s state_dict (names, shapes, dtypes and values, in order):
    the identity of the weights a search pruned, recorded so a resume can check them."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
