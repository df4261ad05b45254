"""Budget accounting of an episode, exact even when a scheme couples layers.

Under most schemes a layer's cost depends only on its own mask, so each decision has a
fixed cost per level. Channel pruning is different: removing a layer's output channels
also removes the next layers' input channels (``PruningScheme.complete_masks``), so a
layer's cost also depends on the levels of its *producers*. The ledger charges each
layer when its own level and all its producers' levels are known, and bounds what is
still open by two completions that can really be played: every open decision at its
first (sparsest) level, or every open decision dense. The budget wall built on it
therefore guarantees that every episode ends within budget on the exact cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from envs.task import PruningTask

DENSE = -1  # level index meaning "no mask"


class CostLedger:
    """Per-step charges and completion bounds of a ``PruningTask``, in dense-cost units.

    ``charge(t, prefix)`` gives, for each level j of decision t, the cost of the layers
    that become fully determined when decision t takes level j (``prefix`` holds the levels
    of decisions 0..t-1); ``low``/``high`` the cost of all layers still open afterwards
    under the sparse and dense completions. Uncoupled tasks use the per-decision tables
    directly (``low`` is then each open decision's cheapest level, ``high`` its dearest).
    """

    def __init__(self, task: PruningTask) -> None:
        self.task = task
        self.metric = task.metric
        self.n = len(task.decisions)
        self._imposed = self._imposed_masks(task)
        self.coupled = any(self._imposed[d][j] for d in range(self.n) for j in self._imposed[d])
        if not self.coupled:
            self._init_tables()
        else:
            self._init_coupled()

    # -- uncoupled: plain tables ---------------------------------------------------------
    def _init_tables(self) -> None:
        task = self.task
        self.dense_total = task.table_dense_metric
        self.base = task.fixed_cost.get(self.metric) / self.dense_total
        self._tables = [d.metric / self.dense_total for d in task.decisions]
        mins = np.array([t.min() for t in self._tables])
        maxs = np.array([t.max() for t in self._tables])
        self._rest_min = np.append(np.cumsum(mins[::-1])[::-1][1:], 0.0)
        self._rest_max = np.append(np.cumsum(maxs[::-1])[::-1][1:], 0.0)
        self.min_ratio = self.base + float(mins.sum())

    # -- coupled: per-layer accounting ---------------------------------------------------
    @staticmethod
    def _imposed_masks(task: PruningTask) -> list[dict[int, dict[str, torch.Tensor]]]:
        """``imposed[d][j][layer]``: masks decision d at level j puts on other layers."""
        names = {layer.name for layer in task.layers}
        out: list[dict[int, dict[str, torch.Tensor]]] = []
        for d in task.decisions:
            own = {layer.name for layer in d.layers}
            per_level: dict[int, dict[str, torch.Tensor]] = {}
            for j in range(len(d.levels) - 1):
                masks = {f"{n}.weight": m for n, m in d.masks[j].items()}
                full = task.scheme.complete_masks(task.workload.model, dict(masks))
                per_level[j] = {
                    key[: -len(".weight")]: m
                    for key, m in full.items()
                    if key.endswith(".weight") and key[: -len(".weight")] in names - own
                }
            out.append(per_level)
        return out

    def _init_coupled(self) -> None:
        task = self.task
        self._owner: dict[str, int] = {}
        for i, d in enumerate(task.decisions):
            for layer in d.layers:
                self._owner[layer.name] = i
        self._producers: dict[str, tuple[int, ...]] = {layer.name: () for layer in task.layers}
        for i, per_level in enumerate(self._imposed):
            touched = {name for masks in per_level.values() for name in masks}
            for name in touched:
                self._producers[name] = tuple(sorted({*self._producers[name], i}))
        self._layers = {layer.name: layer for layer in task.layers}
        self._cache: dict[tuple, float] = {}
        # Step at which a layer's cost is fully known.
        self._resolve = {
            name: max([self._owner.get(name, -1), *self._producers[name]]) for name in self._layers
        }
        all_dense = [DENSE] * self.n
        self.dense_total = 1.0
        self.dense_total = sum(self._layer_cost(name, all_dense) for name in self._layers)
        self._cache.clear()  # entries so far were not normalised
        self.base = sum(self._layer_cost(n, all_dense) for n, s in self._resolve.items() if s < 0)
        self._by_step = [[n for n, s in self._resolve.items() if s == t] for t in range(self.n)]
        self._open = [[n for n, s in self._resolve.items() if s > t] for t in range(self.n)]
        self._varying = [
            [n for n in self._open[t] if self._owner.get(n) == t or t in self._producers[n]]
            for t in range(self.n)
        ]
        self._steady = [
            [n for n in self._open[t] if n not in set(self._varying[t])] for t in range(self.n)
        ]
        self.min_ratio = sum(self._layer_cost(name, [0] * self.n) for name in self._layers)

    def _layer_cost(self, name: str, levels: Sequence[int]) -> float:
        """Normalised cost of layer ``name`` when decision i takes ``levels[i]`` (DENSE: none)."""
        owner = self._owner.get(name)
        own = levels[owner] if owner is not None else DENSE
        prods = tuple(levels[p] for p in self._producers[name])
        key = (name, own, prods)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        mask: torch.Tensor | None = None
        if owner is not None and own != DENSE and own != len(self.task.decisions[owner].levels) - 1:
            mask = self.task.decisions[owner].masks[own][name]
        for p, j in zip(self._producers[name], prods, strict=True):
            imposed = self._imposed[p].get(j, {}).get(name) if j != DENSE else None
            if imposed is not None:
                mask = imposed if mask is None else mask & imposed
        arr = None if mask is None else mask.cpu().numpy()
        value = self.task.hardware.cost(self._layers[name], arr).get(self.metric) / self.dense_total
        self._cache[key] = value
        return value

    # -- the wall's view -----------------------------------------------------------------
    def options(self, t: int, prefix: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(charge, low, high) per level of decision ``t`` given the earlier levels."""
        if not self.coupled:
            table = self._tables[t]
            size = len(table)
            return table, np.full(size, self._rest_min[t]), np.full(size, self._rest_max[t])
        n_levels = len(self.task.decisions[t].levels)
        known = [int(j) for j in prefix[:t]]
        tail = self.n - t - 1
        sparse = known + [0] + [0] * tail
        dense = known + [0] + [len(d.levels) - 1 for d in self.task.decisions[t + 1 :]]
        current = known + [0] + [DENSE] * tail
        # Only layers decision t owns or feeds change with its level; sum the rest once.
        low_rest = sum(self._layer_cost(n, sparse) for n in self._steady[t])
        high_rest = sum(self._layer_cost(n, dense) for n in self._steady[t])
        charge, low, high = np.zeros(n_levels), np.zeros(n_levels), np.zeros(n_levels)
        for j in range(n_levels):
            sparse[t] = dense[t] = current[t] = j
            charge[j] = sum(self._layer_cost(n, current) for n in self._by_step[t])
            low[j] = low_rest + sum(self._layer_cost(n, sparse) for n in self._varying[t])
            high[j] = high_rest + sum(self._layer_cost(n, dense) for n in self._varying[t])
        return charge, low, high
