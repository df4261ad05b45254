"""Unstructured magnitude pruning: the reference every structured scheme is compared with."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.schemes._common import (
    LeveledScheme,
    check_positive_int,
    grid_levels,
    magnitude,
    top_masks,
)


class UnstructuredScheme(LeveledScheme):
    """Keep the largest-magnitude weights of the layer, anywhere.

    Levels are ``k / N`` (``N`` weights in the layer) for the counts ``k`` nearest to a grid
    of ``steps`` equal steps (every ``k`` when ``N <= steps``); a level is exactly the
    density of the mask. The mask at density ``d`` equals
    ``torch.nn.utils.prune.l1_unstructured(amount=1 - d)`` (for weights without ties; ties
    are broken towards the lower flat index). Masks are nested as the density falls.

    Linear layers and 1x1 convolutions are pruned the same way: any weight may go.
    Index format: a bitmask (one bit per weight).
    """

    name = "unstructured"
    index_format = "bitmask"
    codec = "bitmask"
    structure_params: tuple[str, ...] = ()

    def __init__(self, steps: int = 20) -> None:
        super().__init__()
        self.steps = check_positive_int("steps", steps)

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable], np.ndarray]:
        counts, floors = grid_levels(layer.params, self.steps)
        return counts / layer.params, [int(k) for k in counts], floors

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        flat = magnitude(weight).reshape(1, -1)
        return [keep.reshape(weight.shape) for keep in top_masks(flat, [int(k) for k in keys])]


SCHEMES.register("unstructured", UnstructuredScheme)
