"""The last mile of a search: budget-preserving local refinement of the best policy.

A learning agent explores the whole space of policies, but in a few hundred episodes it
rarely lands on the exact optimum of its own reward: its best policies differ from a
better one by a level here and there. ``refine`` spends the last evaluations of a search
on that neighbourhood. From the best feasible policy recorded so far it evaluates one
untried neighbour at a time (first-improvement hill climbing; the recorder keeps the best,
so an improvement moves the search at once):

- *raise* moves first: one decision one level denser, when the exact cost stays within
  budget (unused budget is accuracy left on the table);
- then *swap* moves: one decision one level denser and another made sparser, to the
  densest of its levels that brings the exact cost back within budget.

When every neighbour of the best policy has been tried, the search moves to the
neighbourhood of the next-best recorded policy. Each evaluation is one recorded episode,
so a search that refines plays exactly the episodes it was given (fewer only in a policy
space so small that no recorded policy has an untried neighbour: ``refine`` never
repeats an evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from agents.recorder import EpisodeRecorder
from envs import LayerPruneEnv, PruningTask
from hwmodels import BUDGET_TOLERANCE


def check_refine_fraction(fraction: float) -> float:
    """``fraction`` as a float; ``ValueError`` naming it if it is outside ``[0, 1)``."""
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"refine_fraction must be in [0, 1), got {fraction}")
    return float(fraction)


def refine_episodes(episodes: int, fraction: float) -> int:
    """How many of ``episodes`` go to refinement: ``fraction`` of them, leaving at least one
    for the learner. Raises ``ValueError`` for a fraction outside ``[0, 1)``."""
    share = check_refine_fraction(fraction)
    return max(0, min(int(round(episodes * share)), episodes - 1))


def neighbours(
    task: PruningTask, choice: Sequence[int], budget: float, rng: np.random.Generator
) -> Iterator[tuple[int, ...]]:
    """Feasible one-level moves around ``choice``: raise moves, then swap moves, each group
    in random order. Feasible means the exact cost ratio is within ``budget``."""
    base = [int(j) for j in choice]
    tops = task.dense_choice
    raisable = [i for i, j in enumerate(base) if j < tops[i]]
    within = budget + BUDGET_TOLERANCE

    for i in rng.permutation(raisable):
        cand = list(base)
        cand[i] += 1
        if task.cost_ratio(cand) <= within:
            yield tuple(cand)

    pairs = [(i, j) for i in raisable for j, lj in enumerate(base) if j != i and lj > 0]
    for k in rng.permutation(len(pairs)):
        i, j = pairs[k]
        cand = list(base)
        cand[i] += 1
        if task.cost_ratio(cand) <= within:
            continue  # already offered as a raise move
        for level in range(base[j] - 1, -1, -1):
            cand[j] = level
            if task.cost_ratio(cand) <= within:
                yield tuple(cand)
                break


def refine(
    env: LayerPruneEnv,
    recorder: EpisodeRecorder,
    evaluations: int,
    *,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Hill-climb from ``recorder.best`` for at most ``evaluations`` recorded episodes.

    Never evaluates a policy the recorder has already seen. When every neighbour of the
    best policy has been tried (a local optimum of these moves), the next evaluation goes
    to the neighbourhood of the next-best recorded feasible policy. Returns the number of
    evaluations used: fewer than asked only when no recorded feasible policy has an untried
    neighbour left (tiny policy spaces) or none is feasible.
    """
    rng = np.random.default_rng(seed)
    tried = {tuple(r.choice) for r in recorder.history}
    used = 0
    while used < evaluations:
        cand = _next_candidate(env, recorder, tried, rng)
        if cand is None:
            break
        tried.add(cand)
        recorder.record(env.evaluate_choice(cand))
        used += 1
        if progress is not None:
            progress(1)
    return used


def _next_candidate(
    env: LayerPruneEnv,
    recorder: EpisodeRecorder,
    tried: set[tuple[int, ...]],
    rng: np.random.Generator,
) -> tuple[int, ...] | None:
    """The first untried neighbour of the best recorded feasible policy that has one."""
    feasible = sorted(
        (r for r in recorder.history if r.within_budget),
        key=lambda r: (r.accuracy, -r.cost_ratio),
        reverse=True,
    )
    seen: set[tuple[int, ...]] = set()
    for rec in feasible:
        key = tuple(rec.choice)
        if key in seen:
            continue
        seen.add(key)
        for cand in neighbours(env.task, rec.choice, env.budget, rng):
            if cand not in tried:
                return cand
    return None
