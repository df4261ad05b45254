"""Everything a search needs that does not depend on the agent's actions, computed once.

A ``PruningTask`` holds, for each decision (a prunable layer, or a group of layers a
scheme couples), the scheme's feasible density levels, the keep-mask at every level and
the hardware cost at every level. The environment then only indexes these tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from envs.ledger import CostLedger
from envs.workloads.base import Workload
from hwmodels import Cost, HardwareModel, LayerSpec, resolve_metric, within_budget
from pruning import PruningScheme, inspect_model


@dataclass(frozen=True)
class Decision:
    """One step of an episode: layers that share a density, with per-level tables.

    Attributes:
        layers: the layers decided together (one, unless the scheme couples layers).
        levels: feasible densities, ascending, the last is 1.0.
        masks: ``masks[j][name]`` is the keep-mask of layer ``name`` at ``levels[j]``.
        costs: ``costs[j]`` is the summed hardware ``Cost`` of the layers at ``levels[j]``.
        metric: ``costs[j].get(metric)`` as an array, the value the budget is on.
    """

    layers: tuple[LayerSpec, ...]
    levels: np.ndarray
    masks: tuple[dict[str, torch.Tensor], ...]
    costs: tuple[Cost, ...]
    metric: np.ndarray

    @property
    def name(self) -> str:
        """Name of the first layer (the group's representative)."""
        return self.layers[0].name

    @property
    def params(self) -> int:
        """Weights in the decision's layers."""
        return sum(layer.params for layer in self.layers)


@dataclass
class PruningTask:
    """Precomputed per-decision tables of masks and costs for one search setting.

    Build it with ``build_task``. ``fixed_cost`` is the cost of layers the scheme leaves
    dense (a single level); they are not decisions but count towards every total.
    """

    workload: Workload
    scheme: PruningScheme
    hardware: HardwareModel
    metric: str
    layers: list[LayerSpec]
    decisions: list[Decision]
    fixed_cost: Cost
    fixed_layers: list[LayerSpec] = field(default_factory=list)
    _dense: Cost | None = field(default=None, repr=False)
    _ledger: CostLedger | None = field(default=None, repr=False)
    _costs: dict[tuple[int, ...], Cost] = field(default_factory=dict, repr=False)

    # The budget wall works on per-decision tables (``table_*``), which add up layer by
    # layer. Reported costs (``cost``) are exact: the hardware's network total on the
    # completed masks, which also sees what tables cannot (a channel removed from one
    # layer's outputs removes the next layer's inputs; pipelined totals). For separable
    # schemes on plain-sum hardware the two agree.

    @property
    def table_dense_metric(self) -> float:
        """Dense metric as the sum of per-decision tables (the wall's reference)."""
        return self.fixed_cost.get(self.metric) + sum(float(d.metric[-1]) for d in self.decisions)

    @property
    def ledger(self) -> CostLedger:
        """The budget accounting the environment's wall uses (built once)."""
        if self._ledger is None:
            self._ledger = CostLedger(self)
        return self._ledger

    @property
    def min_cost_ratio(self) -> float:
        """Least cost ratio the budget wall can guarantee."""
        return self.ledger.min_ratio

    def table_cost_ratio(self, choice: Sequence[int]) -> float:
        """Cost ratio of ``choice`` from the per-decision tables (what the wall budgets)."""
        self._check(choice)
        total = self.fixed_cost.get(self.metric) + sum(
            float(d.metric[j]) for d, j in zip(self.decisions, choice, strict=True)
        )
        return total / self.table_dense_metric

    @property
    def dense_cost(self) -> Cost:
        """Network cost of the unpruned model."""
        if self._dense is None:
            self._dense = self.hardware.network_cost(self.layers, None)
        return self._dense

    @property
    def dense_metric(self) -> float:
        """Budgeted metric of the unpruned network."""
        return self.dense_cost.get(self.metric)

    def cost(self, choice: Sequence[int]) -> Cost:
        """Exact network ``Cost`` of a choice (one level index per decision), memoised."""
        key = tuple(int(j) for j in choice)
        if key not in self._costs:
            masks = self.masks(key)
            arrays = [
                None if (m := masks.get(f"{layer.name}.weight")) is None else m.cpu().numpy()
                for layer in self.layers
            ]
            if len(self._costs) >= 4096:
                self._costs.pop(next(iter(self._costs)))
            self._costs[key] = self.hardware.network_cost(self.layers, arrays)
        return self._costs[key]

    def cost_ratio(self, choice: Sequence[int]) -> float:
        """Exact budgeted metric of ``choice`` relative to the dense network."""
        return self.cost(choice).get(self.metric) / self.dense_metric

    def densities(self, choice: Sequence[int]) -> dict[str, float]:
        """Per-layer density of ``choice``, including the layers left dense."""
        self._check(choice)
        out = {layer.name: 1.0 for layer in self.fixed_layers}
        for d, j in zip(self.decisions, choice, strict=True):
            out.update({layer.name: float(d.levels[j]) for layer in d.layers})
        return {layer.name: out[layer.name] for layer in self.layers}

    def overall_density(self, choice: Sequence[int]) -> float:
        """Share of all prunable weights kept, counted on the completed masks.

        ``densities`` are the levels chosen per layer; this counts what is really left,
        e.g. with channel pruning the input weights of the channels a layer upstream
        removed (a policy at 0.81 of its levels can keep 0.43 of the weights).
        """
        masks = self.masks(choice)
        total = sum(layer.params for layer in self.layers)
        kept = 0
        for layer in self.layers:
            mask = masks.get(f"{layer.name}.weight")
            kept += layer.params if mask is None else int(mask.sum())
        return kept / total

    def masks(self, choice: Sequence[int]) -> dict[str, torch.Tensor]:
        """Parameter-name -> keep-mask dict of ``choice``, completed by the scheme."""
        self._check(choice)
        masks: dict[str, torch.Tensor] = {}
        for d, j in zip(self.decisions, choice, strict=True):
            if j != len(d.levels) - 1:
                masks.update({f"{name}.weight": m for name, m in d.masks[j].items()})
        return self.scheme.complete_masks(self.workload.model, masks)

    @property
    def dense_choice(self) -> tuple[int, ...]:
        """The choice that keeps every weight (each decision's last level, density 1)."""
        return tuple(len(d.levels) - 1 for d in self.decisions)

    def check_budget(self, budget: float) -> None:
        """``ValueError`` for a budget outside (0, 1] or below ``min_cost_ratio`` (the one
        statement of that check: the environment and the sweep's preflight use it)."""
        if not 0.0 < float(budget) <= 1.0:
            raise ValueError(f"budget {budget} is outside (0, 1]")
        least = self.min_cost_ratio
        if not within_budget(least, budget):
            raise ValueError(
                f"budget {budget:g} is below the least achievable cost ratio {least:.4f} "
                f"for {self.scheme.name!r} on {self.hardware.name!r} ({self.metric}); use "
                f"a budget of at least {least:.4f}"
            )

    def choice_for_densities(self, densities: dict[str, float]) -> list[int]:
        """Level indices realising per-layer ``densities``: each the highest level whose
        floor (``PruningScheme.floors``) is at or below the request, as ``snap`` does, so
        that a uniform 0.1 gets the grid's 0.1 level even where its count lies a hair above."""
        choice = []
        for d in self.decisions:
            want = densities.get(d.name)
            if want is None:
                raise KeyError(f"policy has no density for layer {d.name!r}")
            floors = self.scheme.floors(d.layers[0])
            if len(floors) != len(d.levels):  # a coupled group's own levels: no floors
                floors = d.levels
            idx = int(np.searchsorted(floors, float(want) + 1e-9, side="right")) - 1
            choice.append(max(idx, 0))
        return choice

    def _check(self, choice: Sequence[int]) -> None:
        if len(choice) != len(self.decisions):
            raise ValueError(f"choice has {len(choice)} entries, task has {len(self.decisions)}")


def _coupled_groups(
    scheme: PruningScheme, workload: Workload, layers: list[LayerSpec]
) -> list[list[str]]:
    return scheme.coupled_groups(workload.model, workload.example_input, layers)


#: Aliases ``keep_dense`` accepts besides layer names.
KEEP_DENSE_ALIASES = ("first", "last")


def resolve_keep_dense(names: Sequence[str], layers: Sequence[str], model: str) -> set[str]:
    """Layer names of ``names`` (``first``/``last`` resolved against ``layers``, in forward
    order); ``ValueError`` naming an unknown one and the valid choices."""
    out = set()
    for name in names:
        if name in KEEP_DENSE_ALIASES:
            out.add(layers[0] if name == "first" else layers[-1])
        elif name in layers:
            out.add(name)
        else:
            raise ValueError(
                f"keep_dense: {model!r} has no layer {name!r}; valid choices: "
                f"{', '.join([*KEEP_DENSE_ALIASES, *layers])}"
            )
    return out


def build_task(
    workload: Workload,
    scheme: PruningScheme,
    hardware: HardwareModel,
    *,
    metric: str = "latency",
    keep_dense: Sequence[str] = (),
) -> PruningTask:
    """Inspect the workload's model and tabulate masks and costs for every level.

    ``keep_dense`` names layers left unpruned (``first``/``last``: the network's first or
    last weighted layer): the papers keep the input convolution dense, whose few weights
    see every pixel. A coupled group (channel pruning) with a member kept dense stays
    dense as a whole.
    """
    metric = resolve_metric(metric)
    layers = inspect_model(workload.model, workload.example_input)
    by_name = {layer.name: layer for layer in layers}
    modules = dict(workload.model.named_modules())
    decisions: list[Decision] = []
    fixed: list[LayerSpec] = []
    fixed_cost = Cost()
    dense = resolve_keep_dense(keep_dense, [layer.name for layer in layers], workload.name)
    groups = [g for g in _coupled_groups(scheme, workload, layers) if not dense.intersection(g)]
    grouped = {name for group in groups for name in group}
    # Layers in no group (e.g. outputs a scheme cannot prune consistently) stay dense.
    frozen = [layer for layer in layers if layer.name not in grouped]
    fixed.extend(frozen)
    fixed_cost = fixed_cost + sum((hardware.cost(m, None) for m in frozen), Cost())
    for group in groups:
        members = tuple(by_name[n] for n in group)
        levels = np.asarray(scheme.levels(members[0]), dtype=float)
        if len(levels) < 2:
            fixed.extend(members)
            fixed_cost = fixed_cost + sum((hardware.cost(m, None) for m in members), Cost())
            continue
        weights = [modules[m.name].weight.detach() for m in members]
        if len(members) > 1:
            # Coupled layers (channel pruning) keep the same channels: one ranking.
            by_level = scheme.group_masks_for_levels(weights, list(members), levels)
        else:
            by_level = [[m] for m in scheme.masks_for_levels(weights[0], members[0], levels)]
        masks = tuple(
            {m.name: by_level[j][i] for i, m in enumerate(members)} for j in range(len(levels))
        )
        costs = tuple(
            sum(
                (hardware.cost(m, masks[j][m.name].cpu().numpy()) for m in members),
                Cost(),
            )
            for j in range(len(levels))
        )
        decisions.append(
            Decision(
                layers=members,
                levels=levels,
                masks=masks,
                costs=costs,
                metric=np.array([c.get(metric) for c in costs]),
            )
        )
    if not decisions:
        raise ValueError(
            f"scheme {scheme.name!r} leaves every layer of {workload.name!r} dense: "
            "nothing to search"
        )
    if fixed_cost.get(metric) + sum(float(d.metric[-1]) for d in decisions) <= 0:
        modelled = [k for k, v in decisions[0].costs[-1].as_dict().items() if v > 0]
        raise ValueError(
            f"hardware {hardware.name!r} does not model {metric!r} (zero for the dense "
            f"network); metrics it models: {', '.join(modelled)}"
        )
    order = {layer.name: i for i, layer in enumerate(layers)}
    decisions.sort(key=lambda d: order[d.name])
    return PruningTask(
        workload=workload,
        scheme=scheme,
        hardware=hardware,
        metric=metric,
        layers=layers,
        decisions=decisions,
        fixed_cost=fixed_cost,
        fixed_layers=fixed,
    )
