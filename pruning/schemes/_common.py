"""Shared machinery of the scheme implementations: level tables, snapping, scoring."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import PruningScheme


def check_positive_int(name: str, value: object) -> int:
    """``value`` as a positive int, or ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_weight(weight: torch.Tensor, layer: LayerSpec) -> None:
    """``ValueError`` unless ``weight`` has ``layer``'s weight shape."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if tuple(weight.shape) != layer.weight_shape:
        raise ValueError(
            f"layer {layer.name!r}: weight shape {tuple(weight.shape)} does not match "
            f"the layer's {layer.weight_shape}"
        )


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """``|weight|`` as float32 on the weight's device, detached from autograd."""
    return weight.detach().abs().to(torch.float32)


def grid_counts(total: int, steps: int) -> np.ndarray:
    """Kept counts for a density grid of ``steps`` steps over ``total`` items.

    Every count from 1 to ``total`` when ``total <= steps``; otherwise the count nearest to
    each of ``j / steps`` (``j = 1..steps``), rounded like ``torch.nn.utils.prune`` rounds
    the pruned amount, so that a level is exactly the density such pruning realises.
    """
    if total <= steps:
        return np.arange(1, total + 1)
    pruned = [round((1.0 - j / steps) * total) for j in range(1, steps + 1)]
    counts = np.unique(np.array([total - p for p in pruned]))
    return counts[counts >= 1]


def rank_descending(scores: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Rank of every entry along ``dim`` (0 = largest); ties keep index order."""
    order = torch.argsort(scores, dim=dim, descending=True, stable=True)
    ranks = torch.empty_like(order)
    arange = torch.arange(scores.shape[dim], device=scores.device)
    shape = [1] * scores.dim()
    shape[dim] = -1
    ranks.scatter_(dim, order, arange.view(shape).expand_as(order))
    return ranks


def top_masks(scores: torch.Tensor, quotas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Keep the ``quota`` largest entries along the last axis, for several quotas at once.

    ``scores`` is sorted once; each quota (an int tensor broadcastable to
    ``scores.shape[:-1] + (1,)``, every entry in ``1..scores.shape[-1]``) becomes a
    threshold, so many levels cost one sort plus one comparison each. When a tie straddles
    a threshold, exact ranks (ties to the lower index) are used, so counts stay exact.
    """
    values = torch.sort(scores, dim=-1, descending=True).values
    size = scores.shape[-1]
    ranks: torch.Tensor | None = None
    out = []
    for quota in quotas:
        q = quota.to(scores.device).expand(*scores.shape[:-1], 1)
        threshold = values.gather(-1, q - 1)
        # A threshold keeps exactly its quota unless the next value ties with it.
        following = values.gather(-1, q.clamp(max=size - 1))
        if bool(((threshold == following) & (q < size)).any()):
            if ranks is None:
                ranks = rank_descending(scores)
            out.append(ranks < q)
        else:
            out.append(scores >= threshold)
    return out


def bits_for(count: int) -> int:
    """Bits of an index into ``count`` choices (0 when there is a single choice)."""
    return math.ceil(math.log2(count)) if count > 1 else 0


class LeveledScheme(PruningScheme):
    """A scheme whose levels come from a per-layer table of (density, key) pairs.

    Subclasses give ``_level_table(layer)``: densities (ascending, the last 1.0) and one
    hashable key per density (a kept count, an ``n``...) that ``_masks`` understands;
    ``mask`` and ``masks_for_levels`` snap the requested densities and rank once.
    """

    def __init__(self) -> None:
        self._tables: dict[LayerSpec, tuple[np.ndarray, list[Hashable]]] = {}

    @abstractmethod
    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        """Realisable densities of ``layer`` (ascending, last 1.0) and their keys."""

    @abstractmethod
    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[torch.Tensor]:
        """Keep-masks for the level ``keys``, from one ranking of ``weight``."""

    def _table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        table = self._tables.get(layer)
        if table is None:
            dens, keys = self._level_table(layer)
            dens = np.asarray(dens, dtype=np.float64)
            assert len(dens) == len(keys) and dens[-1] == 1.0 and np.all(np.diff(dens) > 0)
            table = self._tables[layer] = (dens, list(keys))
        return table

    def levels(self, layer: LayerSpec) -> np.ndarray:
        """Sorted feasible densities in (0, 1] for ``layer``; the last is 1.0."""
        return self._table(layer)[0].copy()

    def _key(self, density: float, layer: LayerSpec, exact: bool) -> Hashable:
        dens, keys = self._table(layer)
        level = self.snap(float(density), layer, exact=exact)
        return keys[int(np.searchsorted(dens, level))]

    def mask(
        self, weight: torch.Tensor, density: float, layer: LayerSpec, *, exact: bool = False
    ) -> torch.Tensor:
        """Bool keep-mask of ``weight``'s shape at ``density`` (snapped down to a level)."""
        check_weight(weight, layer)
        return self._masks(weight, layer, [self._key(density, layer, exact)])[0]

    def masks_for_levels(
        self, weight: torch.Tensor, layer: LayerSpec, levels: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """Masks for several levels (default: all), ranking ``weight`` once."""
        check_weight(weight, layer)
        if levels is None:
            keys = self._table(layer)[1]
        else:
            keys = [self._key(d, layer, False) for d in levels]
        return self._masks(weight, layer, keys)


def kernel_magnitudes(weight: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    """``|weight|`` as one row per ``kh x kw`` kernel: ``(Cout * Cin/groups, kh * kw)``."""
    kh, kw = layer.kernel
    return magnitude(weight).reshape(-1, kh * kw)


def best_shapes(absw: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """Index of the shape (row of bool ``shapes``) keeping the most magnitude, per row.

    Ties go to the earliest shape, so a dictionary ordered by preference breaks them.
    """
    scores = absw @ shapes.to(device=absw.device, dtype=absw.dtype).T
    return torch.argmax(scores, dim=1)
