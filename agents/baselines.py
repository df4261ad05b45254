"""Simple policies every learned policy is compared against, on the same evaluations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.base import AGENTS, EnvFactory, SearchAgent
from agents.recorder import EpisodeRecorder
from envs import PruningTask


def uniform_choice(task: PruningTask, budget: float) -> list[int] | None:
    """The densest uniform policy within ``budget``: one density for every layer.

    Each layer takes its level at or below the shared density; the shared density is the
    largest level of any layer for which the network's cost ratio is within budget.
    ``None`` if even the sparsest uniform policy is over budget.
    """
    candidates = np.unique(np.concatenate([d.levels for d in task.decisions]))[::-1]
    for density in candidates:
        choice = task.choice_for_densities({d.name: float(density) for d in task.decisions})
        if task.cost_ratio(choice) <= budget + 1e-9:
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
