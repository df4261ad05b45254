"""The Gymnasium environment: one pruning decision per layer, rewarded at the end."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from core import defaults
from envs.proxies.base import AccuracyProxy
from envs.task import PruningTask
from hwmodels import BUDGET_TOLERANCE, within_budget

REWARD_FORMS: tuple[str, ...] = ("accuracy", "accuracy-log-cost", "lagrangian")

# Observation features, each scaled to [0, 1].
OBSERVATION_FEATURES: tuple[str, ...] = (
    "step",  # t / (T - 1)
    "is_linear",
    "is_depthwise",
    "out_channels",  # / max over decisions
    "in_channels",
    "in_size",  # input height / max
    "stride",  # / max
    "kernel",  # / max
    "macs",  # / max
    "cost_share",  # this decision's dense cost / dense network cost
    "reduced",  # cost removed so far / dense network cost
    "rest",  # dense cost of later decisions / dense network cost
    "used",  # cost committed so far / dense network cost
    "left",  # (budget - committed) / dense network cost, clipped
    "budget",  # target cost ratio
    "min_density",  # least feasible density after the budget wall
    "max_density",  # greatest feasible density after the budget wall
    "prev_action",  # previous density
)


class LayerPruneEnv(gym.Env):
    """Choose a density for each prunable layer of a network under a hardware budget.

    ## Description
    An episode walks the decisions of a ``PruningTask`` (prunable layers in execution
    order; layers a scheme couples share one decision). At each step the agent picks how
    dense the layer stays; the density is realised by the task's pruning scheme, so the
    structure pruned is the one the target hardware exploits. After the last decision the
    masked network is scored by an accuracy proxy (AMC: no fine-tuning in the loop).

    ## Action Space
    ``Box(-1, 1, (1,), float32)``: mapped linearly onto the layer's density range
    ``[least level, 1]``, then snapped to the nearest level allowed by the budget wall.
    The wall is two-sided: a density is allowed only if the budget stays reachable with
    every later layer at its cheapest level (upper side), and, where possible, if the
    budget would still be used with every later layer dense (lower side, so that no layer
    is pruned more than the budget needs). Every episode therefore ends within budget.

    ## Observation Space
    ``Box(0, 1, (18,), float32)``: AMC's layer embedding (step, layer type, channels,
    input size, stride, kernel, MACs) plus the layer's share of the dense hardware cost,
    the cost removed so far, the dense cost of later layers, the budget used and left,
    the budget itself, the wall's density bounds and the previous density. Names in
    ``OBSERVATION_FEATURES``.

    ## Rewards
    Zero until the last step; then, with ``acc`` the proxy score and ``r`` the cost ratio
    (the metric relative to the dense network):

    - ``"accuracy"`` (default, budget-constrained): ``acc``.
    - ``"accuracy-log-cost"`` (AMC's accuracy-guaranteed form): ``-(1 - acc) * log(1000 r)``.
    - ``"lagrangian"``: ``acc - penalty * max(0, r - budget) / budget``; meant for
      ``budget_wall=False``.

    ## Episode End
    Terminates after the last decision. Never truncates. ``info`` at the end carries
    ``accuracy``, ``cost_ratio``, ``density``, ``densities`` (per layer), ``choice``
    (level indices), ``cost`` (every ``Cost`` field), ``budget`` and ``within_budget``.

    ## Arguments
    - ``task``: a ``PruningTask`` (``envs.build_task``); or pass ``model``, ``scheme``,
      ``hardware``, ``metric`` names to ``envs.make_task`` via ``gym.make``.
    - ``proxy``: an ``AccuracyProxy`` bound to the task's workload.
    - ``budget``: target cost ratio in (0, 1]; rejected if below the least achievable.
    - ``budget_range``: ``(low, high)`` to draw a budget per episode (budget-conditioned
      agents); ``reset(options={"budget": b})`` fixes one.
    - ``reward``: one of ``REWARD_FORMS``. ``penalty``: Lagrangian weight.
    - ``budget_wall``: enforce the wall (default True).
    - ``cache_size``: terminal scores memoised per choice (the proxy is deterministic).
    - ``known_scores``: proxy scores already measured, by choice (never evicted): a
      resumed search replays its past from them instead of evaluating again.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: PruningTask,
        proxy: AccuracyProxy,
        *,
        budget: float = defaults.BUDGET,
        budget_range: tuple[float, float] | None = None,
        reward: str = "accuracy",
        penalty: float = 2.0,
        budget_wall: bool = True,
        cache_size: int = 4096,
        known_scores: Mapping[tuple[int, ...], float] | None = None,
    ) -> None:
        super().__init__()
        if reward not in REWARD_FORMS:
            raise ValueError(f"unknown reward {reward!r}; valid choices: {', '.join(REWARD_FORMS)}")
        self.task = task
        self.proxy = proxy
        self.reward_form = reward
        self.penalty = float(penalty)
        self.budget_wall = bool(budget_wall)
        self.budget_range = None if budget_range is None else tuple(map(float, budget_range))
        for b in (budget,) if budget_range is None else self.budget_range:
            self._validate_budget(b)
        self.budget = float(budget) if budget_range is None else self.budget_range[1]
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[int, ...], float] = OrderedDict()
        self._known = {tuple(int(i) for i in k): float(v) for k, v in (known_scores or {}).items()}

        self.n_steps = len(task.decisions)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(len(OBSERVATION_FEATURES),), dtype=np.float32
        )
        self._ledger = task.ledger
        dense = task.table_dense_metric
        self._dense_share = np.array([d.metric[-1] / dense for d in task.decisions])
        self._rest_dense = np.append(np.cumsum(self._dense_share[::-1])[::-1][1:], 0.0)
        self._static = self._static_features()
        self._t = 0
        self._choice: list[int] = []
        self._spent = self._ledger.base
        self._prev = 1.0

    # -- validation ---------------------------------------------------------------------
    def _validate_budget(self, budget: float) -> None:
        self.task.check_budget(budget)

    # -- features -----------------------------------------------------------------------
    def _static_features(self) -> np.ndarray:
        rows = []
        for d in self.task.decisions:
            layer = d.layers[0]
            rows.append(
                [
                    float(layer.kind == "linear"),
                    float(layer.kind == "depthwise"),
                    sum(m.out_channels for m in d.layers),
                    layer.in_channels,
                    layer.in_hw[0],
                    layer.stride[0],
                    layer.kernel[0],
                    sum(m.macs for m in d.layers),
                ]
            )
        arr = np.asarray(rows, dtype=float)
        arr[:, 2:] /= np.maximum(arr[:, 2:].max(axis=0), 1e-12)
        return arr

    def _bounds(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Level indices allowed at step t by the wall, and each level's charge."""
        charge, low, high = self._ledger.options(t, self._choice)
        if not self.budget_wall:
            return np.arange(len(charge)), charge
        upper_ok = self._spent + charge + low <= self.budget + BUDGET_TOLERANCE
        allowed = np.flatnonzero(upper_ok)
        if allowed.size == 0:  # unreachable by construction; keep the cheapest level
            allowed = np.array([int(np.argmin(charge + low))])
        lower_ok = self._spent + charge[allowed] + high[allowed] >= self.budget - BUDGET_TOLERANCE
        if lower_ok.any():
            allowed = allowed[lower_ok]
        return allowed, charge

    def _observation(self) -> np.ndarray:
        t = min(self._t, self.n_steps - 1)
        # Kept for step(): the wall of step t is computed once.
        self._wall = self._bounds(t)
        allowed, _ = self._wall
        levels = self.task.decisions[t].levels
        obs = np.concatenate(
            [
                [t / max(self.n_steps - 1, 1)],
                self._static[t],
                [
                    self._dense_share[t],
                    sum(self._dense_share[:t]) + self._ledger.base - self._spent,
                    self._rest_dense[t],
                    self._spent,
                    self.budget - self._spent,
                    self.budget,
                    levels[allowed].min(),
                    levels[allowed].max(),
                    self._prev,
                ],
            ]
        )
        return np.clip(obs, 0.0, 1.0).astype(np.float32)

    # -- gym API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"budget": b}`` fixes the budget of this episode."""
        super().reset(seed=seed)
        options = options or {}
        if "budget" in options:
            self._validate_budget(float(options["budget"]))
            self.budget = float(options["budget"])
        elif self.budget_range is not None:
            self.budget = float(self.np_random.uniform(*self.budget_range))
        self._t = 0
        self._choice = []
        self._spent = self._ledger.base
        self._prev = 1.0
        return self._observation(), {"budget": self.budget}

    def density_for_action(self, action: float, t: int | None = None) -> float:
        """The density an action asks for at step ``t`` (before the wall)."""
        levels = self.task.decisions[self._t if t is None else t].levels
        a = float(np.clip(action, -1.0, 1.0))
        return float(levels[0] + (a + 1.0) / 2.0 * (levels[-1] - levels[0]))

    def action_for_density(self, density: float, t: int | None = None) -> np.ndarray:
        """The action that asks for ``density`` at step ``t`` (inverse of the mapping)."""
        levels = self.task.decisions[self._t if t is None else t].levels
        span = max(levels[-1] - levels[0], 1e-12)
        a = 2.0 * (float(density) - levels[0]) / span - 1.0
        return np.array([np.clip(a, -1.0, 1.0)], dtype=np.float32)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Prune the current layer to the density ``action`` asks for, within the wall."""
        if self._t >= self.n_steps:
            raise RuntimeError("step() called after the episode ended; call reset()")
        t = self._t
        want = self.density_for_action(float(np.asarray(action).reshape(-1)[0]), t)
        allowed, cost = self._wall
        levels = self.task.decisions[t].levels
        j = int(allowed[np.argmin(np.abs(levels[allowed] - want))])
        self._choice.append(j)
        self._spent += float(cost[j])
        self._prev = float(levels[j])
        self._t += 1
        if self._t < self.n_steps:
            return self._observation(), 0.0, False, False, {}
        info = self.evaluate_choice(tuple(self._choice))
        return self._observation(), info["reward"], True, False, info

    # -- terminal evaluation ------------------------------------------------------------
    def score(self, choice: tuple[int, ...]) -> float:
        """Proxy score of a choice of level indices, memoised."""
        if choice in self._known:
            return self._known[choice]
        if choice in self._cache:
            self._cache.move_to_end(choice)
            return self._cache[choice]
        acc = float(self.proxy.evaluate(self.task.masks(choice)))
        self._cache[choice] = acc
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return acc

    def _reward(self, acc: float, ratio: float) -> float:
        if self.reward_form == "accuracy":
            return acc
        if self.reward_form == "accuracy-log-cost":
            return -(1.0 - acc) * float(np.log(1000.0 * ratio))
        return acc - self.penalty * max(0.0, ratio - self.budget) / self.budget

    def evaluate_choice(self, choice: tuple[int, ...]) -> dict[str, Any]:
        """Terminal ``info`` (score, costs, reward) of a whole choice of level indices."""
        acc = self.score(choice)
        cost = self.task.cost(choice)
        ratio = self.task.cost_ratio(choice)
        return {
            "accuracy": acc,
            "cost_ratio": ratio,
            "density": self.task.overall_density(choice),
            "densities": self.task.densities(choice),
            "choice": list(choice),
            "cost": cost.as_dict(),
            "budget": self.budget,
            "within_budget": within_budget(ratio, self.budget),
            "reward": self._reward(acc, ratio),
        }
