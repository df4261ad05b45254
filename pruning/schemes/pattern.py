"""PCNN pattern pruning (Tan et al., DAC 2020): n per kernel from a per-layer dictionary."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.schemes._common import (
    LeveledScheme,
    best_shapes,
    check_positive_int,
    kernel_magnitudes,
)


def frequent_codes(codes: np.ndarray, count: int, size: int) -> np.ndarray:
    """The ``count`` most frequent values of int64 ``codes`` (ties: the lower code first)."""
    if size <= 16:
        # A dense histogram is far faster than sorting the codes.
        counts = np.bincount(codes, minlength=1 << size)
        order = np.argsort(-counts, kind="stable")[:count]
        return order[counts[order] > 0]
    values, counts = np.unique(codes, return_counts=True)  # sorted ascending
    return values[np.argsort(-counts, kind="stable")[:count]]


def decode_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """Bool patterns ``(len(codes), size)`` of pattern codes (bit i = kernel position i)."""
    return (codes[:, None] >> np.arange(size)) & 1 == 1


class PatternScheme(LeveledScheme):
    """Every kernel keeps exactly n weights, in one of at most P patterns of the layer.

    For each n the layer's dictionary is the ``pattern_count`` most frequent top-n
    magnitude patterns of its kernels (PCNN); each kernel then takes the dictionary pattern
    that keeps the most ``|w|`` (ties: the more frequent pattern). Levels are
    ``n / (kh*kw)`` for ``n = 1..kh*kw``. Masks are not nested across levels (each n has its
    own dictionary). Kernels of any ``kh x kw`` with ``kh*kw >= 2`` are supported, grouped
    and depthwise ones included (a kernel is one ``(out, in)`` slice); with ties in the
    frequency count the pattern with the lower code wins (bit i = kernel position i;
    kernels above 62 positions break ties by row order instead).

    Linear layers and 1x1 convolutions have no kernel to pattern: the scheme does not apply
    (levels ``[1.0]``, the layer stays dense). Index format: Sparsity Pattern Mask, one
    ``ceil(log2 P)``-bit pattern id per kernel (``"pattern-id"``).
    """

    name = "pattern"
    index_format = "pattern-id"
    codec = "pattern-spm"
    structure_params: tuple[str, ...] = ("pattern_count",)

    def __init__(self, pattern_count: int = 8) -> None:
        super().__init__()
        self.pattern_count = check_positive_int("pattern_count", pattern_count)

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        size = layer.kernel[0] * layer.kernel[1]
        counts = list(range(1, size + 1))
        return np.array(counts) / size, counts

    def dictionary(self, weight: torch.Tensor, layer: LayerSpec, n: int) -> np.ndarray:
        """The layer's pattern dictionary for ``n`` kept weights: ``(P', kh*kw)`` bool.

        Most frequent first; equally frequent patterns by ascending code (bit i set when
        kernel position i, row-major, is kept).
        """
        order = _descending_order(kernel_magnitudes(weight, layer))
        return self._dictionary(order, _prefix_codes(order), n)

    def _dictionary(self, order: np.ndarray, prefix: np.ndarray | None, n: int) -> np.ndarray:
        size = order.shape[1]
        if prefix is not None:
            return decode_codes(frequent_codes(prefix[:, n - 1], self.pattern_count, size), size)
        # Kernels too large for an int64 code (e.g. 11x11): count the bool rows directly.
        top = np.zeros(order.shape, dtype=bool)
        np.put_along_axis(top, order[:, :n], True, axis=1)
        patterns, counts = np.unique(top, axis=0, return_counts=True)
        return patterns[np.argsort(-counts, kind="stable")[: self.pattern_count]]

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        absw = kernel_magnitudes(weight, layer)
        if absw.shape[1] == 1:
            return [np.ones(weight.shape, dtype=bool) for _ in keys]
        order = _descending_order(absw)
        prefix = _prefix_codes(order)
        out = []
        for n in keys:
            patterns = self._dictionary(order, prefix, int(n))
            out.append(patterns[best_shapes(absw, patterns)].reshape(weight.shape))
        return out


def _descending_order(absw: np.ndarray) -> np.ndarray:
    """Kernel positions by descending magnitude, per kernel (ties: lower position first)."""
    return np.argsort(-absw, axis=1, kind="stable")


def _prefix_codes(order: np.ndarray) -> np.ndarray | None:
    """Codes of each kernel's top-n positions for every n, ``(kernels, kh*kw)``.

    None when a kernel has more than 62 positions (the code would overflow int64).
    """
    if order.shape[1] > 62:
        return None
    return np.cumsum(np.left_shift(1, order.astype(np.int64)), axis=1)


SCHEMES.register("pattern", PatternScheme)
