"""A policy for every budget: one budget-conditioned agent, an accuracy-versus-cost front.

AMC searches one policy per budget. Here episodes draw their budget from a range (the
budget is an observation feature), so one trained agent maps any budget in the range to
a policy. ``run_frontier`` trains it, then for ``points`` budgets across the range takes
the better of

- the agent's deterministic policy at that budget (no exploration noise), and
- the best feasible episode seen during training whose cost is within that budget (any
  episode at cost ``c`` is a valid policy for every budget ``>= c``),

and logs the front beside the uniform baseline to one MLflow run: metrics per point
(step = point index), ``front.json`` and ``plots/front.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.base import get_agent
from agents.baselines import uniform_choice
from agents.learners import SB3Agent
from agents.recorder import EpisodeRecord, EpisodeRecorder
from agents.search import SearchConfig, env_factories, run_params, signals_interrupt, torch_threads
from envs import LayerPruneEnv
from tracking import check_experiment, check_store, plots, search_run


@dataclass
class FrontPoint:
    """One budget of the front: the chosen policy and the uniform baseline at that budget."""

    budget: float
    accuracy: float
    cost_ratio: float
    density: float
    source: str  # "policy" (deterministic agent) or "episode" (best seen during training)
    choice: list[int]
    densities: dict[str, float]
    policy_accuracy: float | None
    policy_cost_ratio: float | None
    episode_accuracy: float | None
    uniform_accuracy: float | None
    uniform_cost_ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for ``front.json``."""
        return dict(vars(self))


@dataclass
class FrontierResult:
    """Outcome of ``run_frontier``."""

    run_id: str
    points: list[FrontPoint]
    episodes: int


def _best_within(history: list[EpisodeRecord], budget: float) -> EpisodeRecord | None:
    """Most accurate recorded episode whose cost is within ``budget`` (cheaper breaks ties)."""
    best = None
    for rec in history:
        if rec.cost_ratio <= budget + 1e-9 and (
            best is None or (rec.accuracy, -rec.cost_ratio) > (best.accuracy, -best.cost_ratio)
        ):
            best = rec
    return best


def frontier_points(
    agent: Any,
    env: LayerPruneEnv,
    recorder: EpisodeRecorder,
    budgets: list[float],
) -> list[FrontPoint]:
    """Front points at ``budgets`` from a trained agent and its recorded episodes.

    ``agent`` needs ``policy_choice`` (SB3 agents) for the deterministic policy; other
    agents contribute only their recorded episodes.
    """
    out = []
    for b in budgets:
        policy = agent.policy_choice(env, budget=b) if isinstance(agent, SB3Agent) else None
        seen = _best_within(recorder.history, b)
        candidates = []
        if policy is not None and policy["cost_ratio"] <= b + 1e-9:
            candidates.append(("policy", policy))
        if seen is not None:
            candidates.append(("episode", vars(seen)))
        if not candidates:
            raise RuntimeError(f"no policy within budget {b:g}; this is a bug in the budget wall")
        source, best = max(candidates, key=lambda c: (c[1]["accuracy"], -c[1]["cost_ratio"]))
        uni = uniform_choice(env.task, b)
        uni_info = None if uni is None else env.evaluate_choice(tuple(uni))
        out.append(
            FrontPoint(
                budget=float(b),
                accuracy=float(best["accuracy"]),
                cost_ratio=float(best["cost_ratio"]),
                density=float(best["density"]),
                source=source,
                choice=list(best["choice"]),
                densities=dict(best["densities"]),
                policy_accuracy=None if policy is None else float(policy["accuracy"]),
                policy_cost_ratio=None if policy is None else float(policy["cost_ratio"]),
                episode_accuracy=None if seen is None else float(seen.accuracy),
                uniform_accuracy=None if uni_info is None else float(uni_info["accuracy"]),
                uniform_cost_ratio=None if uni_info is None else float(uni_info["cost_ratio"]),
            )
        )
    return out


def run_frontier(
    config: SearchConfig,
    *,
    command: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> FrontierResult:
    """Train one budget-conditioned agent over ``config.budgets`` and log its front.

    Args:
        config: the search; ``config.budgets`` ``(low, high)`` replaces ``budget`` (``low``
            at least the task's least achievable cost ratio), ``config.points`` budgets
            are evaluated, evenly spaced from ``low`` to ``high`` inclusive;
            ``config.episodes`` are the training episodes (budgets drawn uniformly from
            the range, one per episode), ``config.agent`` any registered agent (SB3
            agents add their deterministic policy to the front; baselines only their
            episodes).
        command: the command line, logged as ``command.txt``.
        progress: called with the number of episodes finished, as in ``run_search``.

    Returns the MLflow run id, the front points and the number of training episodes.
    """
    if config.budgets is None:
        raise ValueError("run_frontier needs config.budgets (LOW, HIGH)")
    check_store()
    check_experiment(config.experiment)
    with torch_threads(config.threads), signals_interrupt():
        return _run_frontier(config, *config.budgets, command=command, progress=progress)


def _run_frontier(
    config: SearchConfig,
    low: float,
    high: float,
    *,
    command: str | None,
    progress: Callable[[int], None] | None,
) -> FrontierResult:
    agent = get_agent(config.agent, config.agent_params)
    task = config.build_task()
    env = config.build_env(task)  # checks both ends of the range against the task
    env_fns = env_factories(config, env, {})
    grid = [float(b) for b in np.linspace(low, high, int(config.points))]

    run_name = (
        f"frontier-{config.agent}-{config.task.scheme}-{config.task.hardware}-b{low:g}:{high:g}"
    )
    with search_run(config.experiment, run_name=run_name) as run:
        run.log_config(run_params(config, task), command=command)
        recorder = EpisodeRecorder(sinks=[run], journal=run.journal)
        agent.search(
            env_fns,
            episodes=config.episodes,
            recorder=recorder,
            seed=config.seed,
            progress=progress,
        )
        run.flush()
        front = frontier_points(agent, env, recorder, grid)
        for i, p in enumerate(front):
            metrics = {
                "front/budget": p.budget,
                "front/accuracy": p.accuracy,
                "front/cost_ratio": p.cost_ratio,
                "front/density": p.density,
            }
            if p.policy_accuracy is not None:
                metrics["front/policy_accuracy"] = p.policy_accuracy
            if p.uniform_accuracy is not None:
                metrics["uniform/accuracy"] = p.uniform_accuracy
                metrics["uniform/cost_ratio"] = p.uniform_cost_ratio
            # One step per point, so MLflow draws each metric along the front.
            run.log_metrics(metrics, step=i)
        run.log_json(
            {
                "model": config.task.model,
                "scheme": config.task.scheme,
                "hardware": config.task.hardware,
                "metric": task.metric,
                "agent": config.agent,
                "budget_range": [low, high],
                "episodes": recorder.episodes,
                "points": [p.as_dict() for p in front],
            },
            "front.json",
        )
        series = {
            f"{config.agent} (one agent)": (
                [p.cost_ratio for p in front],
                [p.accuracy for p in front],
            )
        }
        uni = [p for p in front if p.uniform_accuracy is not None]
        if uni:
            series["uniform"] = (
                [p.uniform_cost_ratio for p in uni],
                [p.uniform_accuracy for p in uni],
            )
        title = f"{config.task.scheme} on {config.task.hardware}: budgets {low:g}-{high:g}"
        fig = plots.tradeoff(series, title=title)
        run.log_figure(fig, "plots/front.png")
        plots.close(fig)
        return FrontierResult(run_id=run.run_id, points=front, episodes=recorder.episodes)
