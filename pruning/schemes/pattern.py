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


def frequent_codes(codes: torch.Tensor, count: int, size: int) -> torch.Tensor:
    """The ``count`` most frequent values of int64 ``codes`` (ties: the lower code first)."""
    if size <= 16:
        # A dense histogram is far faster than sorting the codes.
        counts = torch.bincount(codes, minlength=1 << size)
        order = torch.argsort(-counts, stable=True)[:count]
        return order[counts[order] > 0]
    values, counts = torch.unique(codes, return_counts=True)  # sorted ascending
    return values[torch.argsort(-counts, stable=True)[:count]]


def decode_codes(codes: torch.Tensor, size: int) -> torch.Tensor:
    """Bool patterns ``(len(codes), size)`` of pattern codes (bit i = kernel position i)."""
    return (codes[:, None] >> torch.arange(size, device=codes.device)) & 1 == 1


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
    structure_params: tuple[str, ...] = ("pattern_count",)

    def __init__(self, pattern_count: int = 8) -> None:
        super().__init__()
        self.pattern_count = check_positive_int("pattern_count", pattern_count)

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        size = layer.kernel[0] * layer.kernel[1]
        counts = list(range(1, size + 1))
        return np.array(counts) / size, counts

    def dictionary(self, weight: torch.Tensor, layer: LayerSpec, n: int) -> torch.Tensor:
        """The layer's pattern dictionary for ``n`` kept weights: ``(P', kh*kw)`` bool.

        Most frequent first; equally frequent patterns by ascending code (bit i set when
        kernel position i, row-major, is kept).
        """
        absw = kernel_magnitudes(weight, layer)
        order = torch.argsort(absw, dim=1, descending=True, stable=True)
        return self._dictionary(order, _prefix_codes(order), n)

    def _dictionary(self, order: torch.Tensor, prefix: torch.Tensor | None, n: int) -> torch.Tensor:
        size = order.shape[1]
        if prefix is not None:
            return decode_codes(frequent_codes(prefix[:, n - 1], self.pattern_count, size), size)
        # Kernels too large for an int64 code (e.g. 11x11): count the bool rows directly.
        top = torch.zeros(order.shape, dtype=torch.bool, device=order.device)
        top.scatter_(1, order[:, :n], True)
        patterns, counts = torch.unique(top, dim=0, return_counts=True)
        return patterns[torch.argsort(-counts, stable=True)[: self.pattern_count]]

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[torch.Tensor]:
        absw = kernel_magnitudes(weight, layer)
        if absw.shape[1] == 1:
            return [torch.ones_like(weight, dtype=torch.bool) for _ in keys]
        order = torch.argsort(absw, dim=1, descending=True, stable=True)
        prefix = _prefix_codes(order)
        out = []
        for n in keys:
            patterns = self._dictionary(order, prefix, int(n))
            out.append(patterns[best_shapes(absw, patterns)].reshape(weight.shape))
        return out


def _prefix_codes(order: torch.Tensor) -> torch.Tensor | None:
    """Codes of each kernel's top-n positions for every n, ``(kernels, kh*kw)``.

    None when a kernel has more than 62 positions (the code would overflow int64).
    """
    if order.shape[1] > 62:
        return None
    return torch.cumsum(torch.ones_like(order) << order, dim=1)


SCHEMES.register("pattern", PatternScheme)
