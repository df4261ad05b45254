"""Kang's accelerator-aware (balanced, N-of-M) pruning along the input dimension."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.schemes._common import LeveledScheme, check_positive_int, magnitude, top_masks


def last_group_quota(n: int, group_size: int, fan_in: int) -> int:
    """Weights kept in the short last group (``fan_in % group_size`` long) when groups keep n.

    The short group keeps ``ceil(n * r / m)`` of its ``r`` weights: the same density as a
    full group, rounded up, and the same count in every row (so the PEs stay in lock-step).
    Zero when ``group_size`` divides ``fan_in`` (there is no short group).
    """
    r = fan_in % group_size
    return math.ceil(n * r / group_size) if r else 0


def balanced_density(n: int, group_size: int, fan_in: int) -> float:
    """Density of a balanced mask that keeps ``n`` of every ``group_size`` weights."""
    return (n * (fan_in // group_size) + last_group_quota(n, group_size, fan_in)) / fan_in


class BalancedScheme(LeveledScheme):
    """Every group of ``group_size`` consecutive weights along the input dimension keeps n.

    Groups are consecutive entries of each output channel's unrolled ``K = Cin/groups*kh*kw``
    axis, in ``(cin, kh, kw)`` order: the activations a PE array is fed together (Kang).
    Every group keeps exactly its ``n`` largest-magnitude weights, so every PE does the same
    work per block. When ``group_size`` does not divide ``K``, the last group is shorter
    (``r = K % m`` weights) and keeps ``ceil(n * r / m)`` of them (see ``last_group_quota``).

    Levels are the realised densities for ``n = 1..m``: exactly ``n / m`` whenever ``m``
    divides ``K`` (duplicates, possible when ``K < m``, are dropped). Masks are nested as
    the density falls. Linear layers group along ``in_features`` and 1x1 convolutions along
    ``Cin``, which is what the accelerator streams; a depthwise 3x3 kernel (``K = 9``) is one
    short group. Index format: ``ceil(log2 m)`` bits per kept weight (``"n-of-m"``).
    """

    name = "balanced"
    index_format = "n-of-m"
    codec = "n-of-m"
    structure_params: tuple[str, ...] = ("group_size",)

    def __init__(self, group_size: int = 16) -> None:
        super().__init__()
        self.group_size = check_positive_int("group_size", group_size)

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable], np.ndarray]:
        dens: dict[float, int] = {}
        for n in range(1, self.group_size + 1):
            # setdefault keeps the smallest n realising a density (only when K < m).
            dens.setdefault(balanced_density(n, self.group_size, layer.fan_in), n)
        # A short last group rounds its quota up, so n's density can be a hair above n / m:
        # a request of n / m still gets n. Without a full group (K < m) there is no "n of
        # m" to honour, and levels answer only requests at or above them.
        full = layer.fan_in >= self.group_size
        floors = [min(d, n / self.group_size) if full else d for d, n in dens.items()]
        return np.array(list(dens)), list(dens.values()), np.array(floors)

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        m, fan_in = self.group_size, layer.fan_in
        groups = math.ceil(fan_in / m)
        absw = magnitude(weight).reshape(layer.out_channels, fan_in)
        # -1 is below every magnitude: the padding of a short last group is never kept.
        padded = np.pad(absw, ((0, 0), (0, groups * m - fan_in)), constant_values=-1.0)
        quotas = []
        for n in keys:
            quota = np.full((groups, 1), int(n), dtype=np.int64)
            if fan_in % m:
                quota[-1] = last_group_quota(int(n), m, fan_in)
            quotas.append(quota)
        keeps = top_masks(padded.reshape(layer.out_channels, groups, m), quotas)
        return [k.reshape(layer.out_channels, -1)[:, :fan_in].reshape(weight.shape) for k in keeps]


SCHEMES.register("balanced", BalancedScheme)
