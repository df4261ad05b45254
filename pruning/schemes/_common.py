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


def magnitude(weight: torch.Tensor) -> np.ndarray:
    """``|weight|`` as a float32 numpy array (scheme internals run in numpy, see ``top_masks``)."""
    return np.abs(weight.detach().to("cpu", torch.float32).numpy())


def grid_counts(total: int, steps: int) -> np.ndarray:
    """Kept counts for a density grid of ``steps`` steps over ``total`` items.

    Every count from 1 to ``total`` when ``total <= steps``; otherwise the count nearest to
    each of ``j / steps`` (``j = 1..steps``), rounded like ``torch.nn.utils.prune`` rounds
    the pruned amount, so that a level is exactly the density such pruning realises.
    """
    return grid_levels(total, steps)[0]


def grid_levels(total: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, floors)``: :func:`grid_counts` and the least density each count answers.

    A count rounded from the grid point ``j / steps`` can lie a hair above it (461 of 4,608
    weights for 0.1); a request of ``j / steps`` must still get that count, not fall a whole
    level below, so its floor is ``min(count / total, j / steps)``.
    """
    if total <= steps:
        counts = np.arange(1, total + 1)
        return counts, counts / total
    floors: dict[int, float] = {}
    for j in range(1, steps + 1):
        count = total - round((1.0 - j / steps) * total)
        if count >= 1:
            floors.setdefault(count, min(count / total, j / steps))
    counts = np.array(sorted(floors))
    return counts, np.array([floors[int(c)] for c in counts])


def top_masks(scores: np.ndarray, quotas: Sequence[np.ndarray | int]) -> list[np.ndarray]:
    """Keep the ``quota`` largest entries along the last axis, for several quotas at once.

    ``scores`` is sorted once; each quota (an int or int array broadcastable to
    ``scores.shape[:-1] + (1,)``, every entry in ``1..scores.shape[-1]``) becomes a
    threshold, so many levels cost one sort plus one comparison each. When a tie straddles
    a threshold, the lowest-index tied entries are kept, so counts stay exact.

    Numpy, like all scheme internals: on the shared 2-core CPU numpy's sort and comparisons
    measured 3-60x faster than torch's (sorting 2.4M floats 0.2 s vs 0.56 s; a 2.4M-element
    comparison 0.3 ms vs 18 ms).
    """
    arr = scores
    values = -np.sort(-arr, axis=-1)
    size = arr.shape[-1]
    out = []
    for quota in quotas:
        q = np.broadcast_to(np.asarray(quota, dtype=np.int64), (*arr.shape[:-1], 1))
        threshold = np.take_along_axis(values, q - 1, -1)
        # A threshold keeps exactly its quota unless the next value ties with it.
        following = np.take_along_axis(values, np.minimum(q, size - 1), -1)
        if ((threshold == following) & (q < size)).any():
            keep = _break_ties(arr, threshold, q)
        else:
            keep = arr >= threshold
        out.append(keep)
    return out


def _break_ties(scores: np.ndarray, threshold: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Entries above ``threshold``, topped up with the first tied ones to reach ``quota``."""
    above = scores > threshold
    missing = quota - above.sum(-1, keepdims=True)
    tied = scores == threshold
    return above | (tied & (tied.cumsum(-1) <= missing))


def bits_for(count: int) -> int:
    """Bits of an index into ``count`` choices (0 when there is a single choice)."""
    return math.ceil(math.log2(count)) if count > 1 else 0


class LeveledScheme(PruningScheme):
    """A scheme whose levels come from a per-layer table of (density, key) pairs.

    Subclasses give ``_level_table(layer)``: densities (ascending, the last 1.0), one
    hashable key per density (a kept count, an ``n``...) that ``_masks`` understands and,
    optionally, each level's floor (see :meth:`PruningScheme.floors`; default: the
    densities); ``mask`` and ``masks_for_levels`` snap the requested densities and rank once.
    """

    def __init__(self) -> None:
        self._tables: dict[LayerSpec, tuple[np.ndarray, list[Hashable], np.ndarray]] = {}

    @abstractmethod
    def _level_table(
        self, layer: LayerSpec
    ) -> tuple[np.ndarray, list[Hashable]] | tuple[np.ndarray, list[Hashable], np.ndarray]:
        """Realisable densities of ``layer`` (ascending, last 1.0), their keys and
        optionally their floors (ascending, each at most its density)."""

    @abstractmethod
    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        """Bool keep-masks (numpy, weight-shaped) for the level ``keys``, ranking once."""

    def _table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable], np.ndarray]:
        table = self._tables.get(layer)
        if table is None:
            dens, keys, *floors = self._level_table(layer)
            dens = np.asarray(dens, dtype=np.float64)
            low = np.asarray(floors[0], dtype=np.float64) if floors else dens
            assert len(dens) == len(keys) == len(low) and dens[-1] == 1.0
            assert np.all(np.diff(dens) > 0) and np.all(np.diff(low) > 0) and np.all(low <= dens)
            # Each level answers a request of exactly itself: the next floor is above it.
            assert np.all(low[1:] > dens[:-1])
            table = self._tables[layer] = (dens, list(keys), low)
        return table

    def levels(self, layer: LayerSpec) -> np.ndarray:
        """Sorted feasible densities in (0, 1] for ``layer``; the last is 1.0."""
        return self._table(layer)[0].copy()

    def floors(self, layer: LayerSpec) -> np.ndarray:
        """The least requested density each level answers (see ``PruningScheme.floors``)."""
        return self._table(layer)[2].copy()

    def _key(self, density: float, layer: LayerSpec, exact: bool) -> Hashable:
        dens, keys, _ = self._table(layer)
        level = self.snap(float(density), layer, exact=exact)
        return keys[int(np.searchsorted(dens, level))]

    def mask(
        self, weight: torch.Tensor, density: float, layer: LayerSpec, *, exact: bool = False
    ) -> torch.Tensor:
        """Bool keep-mask of ``weight``'s shape at ``density`` (snapped down to a level)."""
        check_weight(weight, layer)
        return to_torch(self._masks(weight, layer, [self._key(density, layer, exact)])[0], weight)

    def masks_for_levels(
        self, weight: torch.Tensor, layer: LayerSpec, levels: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """Masks for several levels (default: all), ranking ``weight`` once."""
        check_weight(weight, layer)
        if levels is None:
            keys = self._table(layer)[1]
        else:
            keys = [self._key(d, layer, False) for d in levels]
        return [to_torch(m, weight) for m in self._masks(weight, layer, keys)]


def to_torch(mask: np.ndarray, weight: torch.Tensor) -> torch.Tensor:
    """A numpy keep-mask as a bool tensor on ``weight``'s device."""
    assert mask.shape == tuple(weight.shape) and mask.dtype == np.bool_
    if not (mask.flags.c_contiguous and mask.flags.writeable):
        mask = mask.copy()  # broadcast views are read-only; torch wants writable memory
    return torch.from_numpy(mask).to(weight.device)


def kernel_magnitudes(weight: torch.Tensor, layer: LayerSpec) -> np.ndarray:
    """``|weight|`` as one row per ``kh x kw`` kernel: ``(Cout * Cin/groups, kh * kw)``."""
    kh, kw = layer.kernel
    return magnitude(weight).reshape(-1, kh * kw)


def best_shapes(absw: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Index of the shape (row of bool ``shapes``) keeping the most magnitude, per row.

    Ties go to the earliest shape, so a dictionary ordered by preference breaks them.
    """
    # einsum rather than BLAS matmul: with 9 positions and a few shapes the BLAS call is
    # mostly threading overhead (measured 130 ms vs 26 ms for 262k kernels x 8 shapes).
    return np.argmax(np.einsum("nk,sk->ns", absw, shapes.astype(absw.dtype)), axis=1)
