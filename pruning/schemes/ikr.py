"""Intra-Kernel Regular (IKR) pruning (Yang, Faraj, Hussein, Gaudet; ISMVL 2018)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import lru_cache

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.schemes._common import LeveledScheme, best_shapes, kernel_magnitudes


def _square_shapes(k: int) -> list[np.ndarray]:
    """Every regular shape of a ``k x k`` kernel, as ``(k, k)`` bool arrays (duplicates kept)."""
    shapes: list[np.ndarray] = []

    def add(cells: np.ndarray) -> None:
        shapes.append(cells.astype(bool))

    for i in range(k * k):  # single points
        add(np.eye(1, k * k, i).reshape(k, k))
    for i in range(k):  # rows and columns
        add(np.eye(k)[i][:, None] * np.ones((1, k)))
        add(np.ones((k, 1)) * np.eye(k)[i][None, :])
    add(np.eye(k))  # the two diagonals
    add(np.fliplr(np.eye(k)))
    if k % 2:  # plus and X crosses through the centre
        mid = np.zeros((k, k))
        mid[k // 2, :] = mid[:, k // 2] = 1
        add(mid)
        add(np.maximum(np.eye(k), np.fliplr(np.eye(k))))
    for r0 in (0, 1):  # (k-1)x(k-1) corner squares
        for c0 in (0, 1):
            sq = np.zeros((k, k))
            sq[r0 : r0 + k - 1, c0 : c0 + k - 1] = 1
            add(sq)
    for start in (0, 1):  # k-1 adjacent rows or columns
        band = np.zeros((k, k))
        band[start : start + k - 1, :] = 1
        add(band)
        add(band.T)
    add(np.ones((k, k)))
    return shapes


@lru_cache(maxsize=16)
def ikr_shapes(kh: int, kw: int) -> dict[int, np.ndarray]:
    """The IKR shape set of a ``kh x kw`` kernel: kept count -> ``(S, kh*kw)`` bool shapes.

    Defined for square kernels ``k >= 2``; for a 3x3 kernel (positions row-major):

    - 1: any single position (9 shapes);
    - 3: a row, a column or a diagonal (8 shapes);
    - 4: a 2x2 corner square (4 shapes);
    - 5: the plus cross or the X cross through the centre (2 shapes);
    - 6: two adjacent rows or two adjacent columns (4 shapes);
    - 9: the whole kernel.

    Larger square kernels get the same families (point, line of k, (k-1)^2 corner square,
    crosses of 2k-1 for odd k, k(k-1) band, full); non-square or 1x1 kernels have none but
    the full kernel. The order within a count is the order of the list above, and is the
    shape id the index format stores.
    """
    if kh != kw or kh < 2:
        return {kh * kw: np.ones((1, kh * kw), dtype=bool)}
    by_count: dict[int, list[np.ndarray]] = {}
    for shape in _square_shapes(kh):
        flat = shape.reshape(-1)
        bucket = by_count.setdefault(int(flat.sum()), [])
        if not any(np.array_equal(flat, s) for s in bucket):
            bucket.append(flat)
    return {n: np.stack(by_count[n]) for n in sorted(by_count)}


class IKRScheme(LeveledScheme):
    """Every kernel keeps the same number n of weights, in one of a few regular shapes.

    The shape set per kept count is ``ikr_shapes`` (for 3x3: n in {1, 3, 4, 5, 6, 9} with
    points, lines, 2x2 corners, crosses and bands); each kernel independently takes the
    shape of that count which keeps the most ``|w|`` (ties: the earlier shape). Levels are
    ``n / (kh*kw)``. Masks are not nested across levels (a cross is not inside a 2x2 corner).

    Linear layers, 1x1 and non-square convolutions have no intra-kernel structure: the
    scheme does not apply to them (levels ``[1.0]``, the layer stays dense). Index format:
    a shape id per kernel (``"pattern-id"``).
    """

    name = "ikr"
    index_format = "pattern-id"
    codec = "ikr-shapes"
    structure_params: tuple[str, ...] = ()

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        counts = sorted(ikr_shapes(*layer.kernel))  # a linear layer's kernel is (1, 1)
        return np.array(counts) / counts[-1], counts

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        absw = kernel_magnitudes(weight, layer)
        table = ikr_shapes(*layer.kernel)
        out = []
        for n in keys:
            shapes = table[int(n)]
            out.append(shapes[best_shapes(absw, shapes)].reshape(weight.shape))
        return out


SCHEMES.register("ikr", IKRScheme)
