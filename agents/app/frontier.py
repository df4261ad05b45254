"""A policy for every budget: one budget-conditioned agent, an accuracy-versus-cost front.

AMC searches one policy per budget. Here episodes draw their budget from a range (the
budget is an observation feature), so one trained agent maps any budget in the range to
a policy. ``run_frontier`` trains it, then for ``points`` budgets across the range takes
the better of

- the agent's deterministic policy at that budget (no exploration noise), and
- the best feasible episode seen during training whose cost is within that budget (any
  episode at cost ``c`` is a valid policy for every budget ``>= c``),

or the uniform policy at that budget when it scores better (so the front is never below
uniform pruning), and logs the front to one MLflow run: metrics per point (step = point
index) with each point's test accuracy, each point's pruned model (``front/b<budget>/``),
``front.json`` and ``plots/front.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.app.finalize import delivered_models, log_pruned_model, recovery_states
from agents.app.search import ResumeState, SearchConfig, SearchKind, run_kind
from agents.baselines import uniform_choice
from agents.learners import SB3Agent
from agents.recorder import EpisodeRecord, EpisodeRecorder
from envs import LayerPruneEnv, PruningTask
from hwmodels import within_budget
from tracking import plots


@dataclass
class FrontPoint:
    """One budget of the front: the chosen policy and the uniform baseline at that budget."""

    budget: float
    accuracy: float
    cost_ratio: float
    density: float
    source: str  # "policy" (deterministic agent), "episode" (best seen) or "uniform"
    choice: list[int]
    densities: dict[str, float]
    policy_accuracy: float | None
    policy_cost_ratio: float | None
    episode_accuracy: float | None
    uniform_accuracy: float | None
    uniform_cost_ratio: float | None
    test_accuracy: float | None = None
    uniform_test_accuracy: float | None = None
    artifact_path: str | None = None

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
        if within_budget(rec.cost_ratio, budget) and (
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
        if policy is not None and within_budget(policy["cost_ratio"], b):
            candidates.append(("policy", policy))
        if seen is not None:
            candidates.append(("episode", vars(seen)))
        uni = uniform_choice(env.task, b)
        uni_info = None if uni is None else env.evaluate_choice(tuple(uni))
        if uni_info is not None:
            # A known policy within budget: the front is never below uniform pruning.
            candidates.append(("uniform", uni_info))
        if not candidates:
            raise RuntimeError(f"no policy within budget {b:g}; this is a bug in the budget wall")
        source, best = max(candidates, key=lambda c: (c[1]["accuracy"], -c[1]["cost_ratio"]))
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
    resume: ResumeState | None = None,
    export_dir: str | Path | None = None,
    recovery_progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> FrontierResult:
    """Train one budget-conditioned agent over ``config.budgets`` and log its front.

    Args:
        config: the search; ``config.budgets`` ``(low, high)`` replaces ``budget`` (``low``
            at least the task's least achievable cost ratio), ``config.points`` budgets
            are evaluated, evenly spaced from ``low`` to ``high`` inclusive;
            ``config.episodes`` are the training episodes (budgets drawn uniformly from
            the range, one per episode), ``config.agent`` any registered agent (SB3
            agents add their deterministic policy to the front; baselines only their
            episodes); ``config.finetune_steps`` fine-tune every point before its test,
            ``config.finetune_epochs`` recover every point and its uniform policy.
        command: the command line, logged as ``command.txt``.
        progress: called with the number of episodes finished, as in ``run_search``.
        resume: continue an interrupted front run (``agents.app.search.load_resume``).
        export_dir: also write each point's pruned model to ``export_dir/b<budget>/``.
        recovery_progress: as in ``run_search``; labels ``b<budget>`` and
            ``b<budget> uniform``.

    Returns the MLflow run id, the front points and the number of training episodes.
    """
    if config.budgets is None:
        raise ValueError("run_frontier needs config.budgets (LOW, HIGH)")
    kind = Front(export_dir=export_dir, recovery_progress=recovery_progress)
    return run_kind(config, kind, command=command, progress=progress, resume=resume)


def point_path(budget: float) -> str:
    """Where a front point's export lives in its run (and under ``--export``)."""
    return f"front/b{budget:.3f}"


class Front(SearchKind):
    """A budget range: the front of best policies per budget, each tested and exported."""

    def run_name(self, config: SearchConfig) -> str:
        """``frontier-ddpg-balanced-accel-kang-16-b0.3:0.8-s0``."""
        low, high = config.budgets or (0.0, 0.0)
        return (
            f"frontier-{config.agent}-{config.task.scheme}-{config.task.hardware}"
            f"-b{low:g}:{high:g}-s{config.seed}"
        )

    def finish(
        self,
        run: Any,
        config: SearchConfig,
        task: PruningTask,
        agent: Any,
        recorder: EpisodeRecorder,
        env: LayerPruneEnv,
    ) -> FrontierResult:
        """Front points, their test accuracy, exports, metrics, ``front.json`` and plot."""
        low, high = config.budgets or (0.0, 0.0)
        grid = [float(b) for b in np.linspace(low, high, int(config.points))]
        front = frontier_points(agent, env, recorder, grid)
        dense_test = float(task.workload.meta.get("test_accuracy", float("nan")))
        dense_holdout = env.score(task.dense_choice)
        recipe = config.recovery_recipe(task)  # every point, and its uniform policy
        if recipe is not None:
            run.log_json(recipe.as_dict(), "recovery.json")
        for i, p in enumerate(front):
            uni = uniform_choice(task, p.budget)
            wanted = {f"b{p.budget:.3f}": p.choice}
            if uni is not None:
                wanted[f"b{p.budget:.3f} uniform"] = uni
            delivered = delivered_models(
                task,
                wanted,
                finetune_steps=config.finetune_steps,
                recipe=recipe,
                seed=config.seed,
                progress=self.recovery_progress,
                states=recovery_states(run),
            )
            point, *uniform = delivered.values()
            model, p.test_accuracy = point.model, point.after
            if uniform:
                p.uniform_test_accuracy = uniform[0].after
            p.artifact_path = point_path(p.budget)
            policy = {
                "model": config.task.model,
                "scheme": config.task.scheme,
                "hardware": config.task.hardware,
                "metric": task.metric,
                "budget": p.budget,
                "holdout_accuracy": p.accuracy,
                "test_accuracy": p.test_accuracy,
                "cost_ratio": p.cost_ratio,
                "density": p.density,
                "densities": p.densities,
                "choice": p.choice,
                "source": p.source,
            }
            if recipe is not None:
                policy["test_accuracy_before_recovery"] = point.before
                policy["recovery_epochs"] = config.finetune_epochs
            log_pruned_model(
                run,
                task,
                model,
                policy=policy,
                finetune_steps=config.finetune_steps,
                export_dir=None
                if self.export_dir is None
                else self.export_dir / f"b{p.budget:.3f}",
                spec=config.task,
                extra={"recovery": recipe.as_dict()} if recipe is not None else None,
                artifact_path=f"{p.artifact_path}/pruned_model",
                log_model=False,
            )
            metrics = {
                "front/budget": p.budget,
                "front/accuracy": p.accuracy,
                "front/test_accuracy": p.test_accuracy,
                "front/cost_ratio": p.cost_ratio,
                "front/density": p.density,
            }
            if recipe is not None:
                metrics["front/test_accuracy_before_recovery"] = point.before
            if p.policy_accuracy is not None:
                metrics["front/policy_accuracy"] = p.policy_accuracy
            if p.uniform_accuracy is not None:
                metrics["uniform/accuracy"] = p.uniform_accuracy
                metrics["uniform/cost_ratio"] = p.uniform_cost_ratio
            if p.uniform_test_accuracy is not None:
                metrics["uniform/test_accuracy"] = p.uniform_test_accuracy
            # One step per point, so MLflow draws each metric along the front.
            run.log_metrics(metrics, step=i)
        run.log_metrics(
            {"dense/test_accuracy": dense_test, "dense/holdout_accuracy": dense_holdout}
        )
        run.log_json(
            {
                "model": config.task.model,
                "scheme": config.task.scheme,
                "hardware": config.task.hardware,
                "metric": task.metric,
                "agent": config.agent,
                "budget_range": [low, high],
                "episodes": recorder.episodes,
                "finetune_steps": config.finetune_steps,
                "recovery_epochs": config.finetune_epochs,
                "points": [p.as_dict() for p in front],
            },
            "front.json",
        )
        _log_front_plot(run, config, front, dense_test)
        return FrontierResult(run_id=run.run_id, points=front, episodes=recorder.episodes)


def _log_front_plot(
    run: Any, config: SearchConfig, front: list[FrontPoint], dense_test: float
) -> None:
    tuned = f" after {config.finetune_steps} fine-tune steps" if config.finetune_steps else ""
    if config.finetune_epochs:
        tuned = f", recovered {config.finetune_epochs} epochs"
    series = {
        f"{config.agent} front (one agent)": (
            [p.cost_ratio for p in front],
            [p.test_accuracy for p in front],
        )
    }
    uni = [p for p in front if p.uniform_test_accuracy is not None]
    if uni:
        series["uniform pruning"] = (
            [p.uniform_cost_ratio for p in uni],
            [p.uniform_test_accuracy for p in uni],
        )
    low, high = config.budgets or (0.0, 0.0)
    fig = plots.tradeoff(
        series,
        title=f"{config.task.scheme} on {config.task.hardware}: budgets {low:g}-{high:g}",
        ylabel=f"test accuracy{tuned}",
        references={"dense": dense_test},
    )
    run.log_figure(fig, "plots/front.png")
    plots.close(fig)
