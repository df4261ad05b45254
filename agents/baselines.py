"""Simple policies every learned policy is compared against, on the same evaluations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.base import AGENTS, EnvFactory, SearchAgent
from agents.recorder import EpisodeRecorder
from envs import PruningTask
from hwmodels import within_budget


def uniform_choice(task: PruningTask, budget: float) -> list[int] | None:
    """The densest uniform policy within ``budget``: one density for every layer.

    Each layer takes its level at or below the shared density; the shared density is the
    largest level of any layer for which the network's cost ratio is within budget.
    ``None`` if even the sparsest uniform policy is over budget.
    """
    candidates = np.unique(np.concatenate([d.levels for d in task.decisions]))[::-1]
    for density in candidates:
        choice = task.choice_for_densities({d.name: float(density) for d in task.decisions})
        if within_budget(task.cost_ratio(choice), budget):
            return choice
    return None


@AGENTS.register("uniform", help="densest uniform density within budget (one evaluation)")
class UniformAgent(SearchAgent):
    """The densest uniform policy within budget. It is deterministic, so it is evaluated
    once, whatever the episode count."""

    name = "uniform"

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Evaluate the uniform policy once."""
        env = env_fns[0]()
        env.reset(seed=seed)
        choice = uniform_choice(env.task, env.budget)
        if choice is None:
            raise ValueError(f"no uniform policy is within budget {env.budget}")
        recorder.record(env.evaluate_choice(tuple(choice)))
        if progress is not None:
            progress(episodes)


@AGENTS.register("random", help="random feasible policies, best kept")
class RandomAgent(SearchAgent):
    """Uniformly random actions through the budget wall, ``episodes`` times."""

    name = "random"

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Play ``episodes`` episodes of random actions."""
        env = env_fns[0]()
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        for _ in range(episodes):
            env.reset()
            done = False
            while not done:
                action = rng.uniform(-1.0, 1.0, size=(1,)).astype(np.float32)
                _, _, done, _, info = env.step(action)
            recorder.record(info)
            if progress is not None:
                progress(1)


def _move_for_saving(costs: np.ndarray, current: int, saving: float) -> int | None:
    """The highest level below ``current`` whose cost saving is at least ``saving``.

    ``None`` if the decision is already at its cheapest level; the cheapest level if no
    level saves that much.
    """
    if current == 0:
        return None
    for j in range(current - 1, -1, -1):
        if costs[current] - costs[j] >= saving - 1e-12:
            return j
    return int(np.argmin(costs[:current]))


@AGENTS.register("greedy", help="start dense, prune the cheapest-accuracy layer step by step")
class GreedyAgent(SearchAgent):
    """Greedy layer-wise descent from the dense network, then a fill-up of unused budget.

    Descent: from the dense choice, every round evaluates, for each decision, the
    candidate that lowers only that decision by the smallest step saving at least
    ``gap / rounds_left`` of the budgeted cost (one level when episodes are plentiful, a
    bigger jump when the episode limit would otherwise end the descent above budget), and
    keeps the candidate with the least proxy-accuracy loss per unit of cost saved. It stops
    once the cost is within budget. Fill-up: while episodes remain, every round evaluates
    raising each decision by one level where the result stays within budget and keeps the
    best one if it improves accuracy.

    Every proxy evaluation is one episode (``env.evaluate_choice`` + ``recorder.record``);
    it never exceeds ``episodes``. Intermediate choices of the descent are over budget and
    are recorded as such (``within_budget=False``); the recorder keeps only feasible bests.
    If the limit would end the descent above budget, its last evaluation goes to the
    descent's choice capped at the densest shared density that fits the budget.
    """

    name = "greedy"

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Run the descent and the fill-up within ``episodes`` evaluations."""
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        env = env_fns[0]()
        env.reset(seed=seed)
        task = env.task
        budget = env.budget
        dense = task.dense_metric
        costs = [d.metric / dense for d in task.decisions]
        used = 0

        def evaluate(choice: list[int]) -> dict:
            nonlocal used
            used += 1
            info = env.evaluate_choice(tuple(choice))
            recorder.record(info)
            if progress is not None:
                progress(1)
            return info

        current = list(task.dense_choice)
        info = evaluate(current)
        acc, ratio = info["accuracy"], info["cost_ratio"]
        # Descent; the last evaluation is kept for a feasible fallback if it runs short.
        while not within_budget(ratio, budget) and used < episodes - 1:
            movable = [i for i, j in enumerate(current) if j > 0]
            if not movable:
                break
            rounds_left = max((episodes - used) // len(movable), 1)
            step = (ratio - budget) / rounds_left
            best: tuple[float, list[int], dict] | None = None
            for i in movable:
                if used >= episodes - 1:
                    break
                j = _move_for_saving(costs[i], current[i], step)
                assert j is not None
                cand = list(current)
                cand[i] = j
                cinfo = evaluate(cand)
                saved = max(ratio - cinfo["cost_ratio"], 1e-12)
                score = (acc - cinfo["accuracy"]) / saved
                if best is None or score < best[0]:
                    best = (score, cand, cinfo)
            if best is None:
                break
            _, current, info = best
            acc, ratio = info["accuracy"], info["cost_ratio"]
        if not within_budget(ratio, budget) and used < episodes:
            # Out of rounds above budget: cap every decision at the densest shared density
            # that fits, keeping the descent's lower levels (a uniform cut of its result).
            for density in np.unique(np.concatenate([d.levels for d in task.decisions]))[::-1]:
                capped = task.choice_for_densities({d.name: float(density) for d in task.decisions})
                cand = [min(a, b) for a, b in zip(current, capped, strict=True)]
                if within_budget(task.cost_ratio(cand), budget):
                    current, info = cand, evaluate(cand)
                    acc, ratio = info["accuracy"], info["cost_ratio"]
                    break
        # Fill-up of budget left unused by the last (possibly large) step.
        while within_budget(ratio, budget) and used < episodes:
            best = None
            for i, j in enumerate(current):
                if j == len(task.decisions[i].levels) - 1 or used >= episodes:
                    continue
                cand = list(current)
                cand[i] = j + 1
                if not within_budget(task.cost_ratio(cand), budget):
                    continue  # cheap check on the cost tables; no evaluation spent
                cinfo = evaluate(cand)
                if cinfo["accuracy"] > acc and (best is None or cinfo["accuracy"] > best[1]):
                    best = (cand, cinfo["accuracy"], cinfo)
            if best is None:
                break
            current, acc, info = best
            ratio = info["cost_ratio"]
