"""Search only: the best policy of one search, for a user's own script or benchmark.

``run_search(SearchConfig(...))`` is the tracked path: an MLflow run, the test of the
best and the uniform policy, recovery, export and registry. ``search_policy`` is the same
search without any of that: the environment, the agent with its YAML hyperparameters and
the recorder, and back comes the best feasible policy and every episode's figures::

    from agents import search_policy
    from envs import TaskSpec

    found = search_policy(TaskSpec(model="fashion-cnn"), budget=0.4, episodes=100)
    found.choice, found.accuracy, found.cost_ratio
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.base import get_agent
from agents.recorder import EpisodeRecord, EpisodeRecorder
from core import defaults
from envs import PruningTask, TaskSpec, make_env, make_task
from envs.proxies.base import AccuracyProxy


@dataclass(frozen=True)
class FoundPolicy:
    """The outcome of :func:`search_policy`.

    Attributes:
        choice: level index per decision of the task (``task.masks(choice)``).
        episode: the episode that found it (0-based).
        accuracy: the search proxy's score of that policy.
        cost_ratio: its budgeted cost relative to the dense network.
        density: share of the prunable weights it keeps.
        records: every evaluated episode, in order.
        seconds: wall time of the search.
    """

    choice: tuple[int, ...]
    episode: int
    accuracy: float
    cost_ratio: float
    density: float
    records: tuple[EpisodeRecord, ...]
    seconds: float


def search_policy(
    task: PruningTask | TaskSpec,
    *,
    budget: float = defaults.BUDGET,
    agent: str = defaults.AGENT,
    episodes: int = defaults.EPISODES,
    seed: int = 0,
    proxy: str | AccuracyProxy | None = None,
    proxy_params: Mapping[str, Any] | None = None,
    agent_params: Mapping[str, Any] | None = None,
) -> FoundPolicy:
    """Run one search of ``episodes`` evaluations and return its best feasible policy.

    ``proxy`` defaults to the scheme's own (``scheme.search_proxy``); a bound
    ``AccuracyProxy`` is reused as it is, so that many searches share its cached data.
    ``ValueError`` for a budget below what the task can reach or a bad name or value;
    ``RuntimeError`` if no episode was feasible (the budget wall makes every one so).
    """
    task = task if isinstance(task, PruningTask) else make_task(task)
    if proxy is None:
        proxy, proxy_params = task.scheme.search_proxy, dict(task.scheme.search_proxy_params)
    env = make_env(task, proxy=proxy, budget=budget, proxy_params=dict(proxy_params or {}))
    recorder = EpisodeRecorder()
    t0 = time.perf_counter()
    get_agent(agent, dict(agent_params or {})).search(
        [lambda: env], episodes=episodes, recorder=recorder, seed=seed
    )
    seconds = time.perf_counter() - t0
    best = recorder.best
    if best is None:
        raise RuntimeError(f"no feasible policy in {recorder.episodes} episodes")
    return FoundPolicy(
        choice=tuple(int(j) for j in best.choice),
        episode=int(best.episode),
        accuracy=float(best.accuracy),
        cost_ratio=float(best.cost_ratio),
        density=float(best.density),
        records=tuple(recorder.history),
        seconds=seconds,
    )
