"""The last choice of a search: re-score its shortlist with a costlier, truer proxy.

A search ranks thousands of policies by a cheap proxy (``holdout``: one BatchNorm
re-estimation and a holdout pass). Far from the best policies that proxy ranks well, but
among the best ones, which differ by a few tenths of a point, its order is little better
than chance: measured on Fashion-MNIST, the short fine-tune proxy ranks the searches' best
policies closer to their accuracy after a real fine-tune than ``holdout`` does
(``bench/proxy_fidelity.py --top-from``). It costs several times more per evaluation,
too much to drive a search of hundreds of episodes, but cheap for a handful of policies.

So a search may end by re-scoring its ``shortlist`` (the ``k`` best distinct feasible
policies it recorded, best first) with that proxy and keeping the best by it (ties go to
the search proxy's order). NetAdapt picks its candidates after a short-term fine-tune for
the same reason. Nothing here changes what the agent learned or the episodes it played.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.app.search_params import SEARCH_PARAMS
from agents.recorder import EpisodeRecord


def check_shortlist(k: int) -> int:
    """``k`` if it is a valid shortlist size (an int >= 0; 0: no re-scoring)."""
    return SEARCH_PARAMS["shortlist"].check(k)


def shortlist(history: Sequence[EpisodeRecord], k: int) -> list[EpisodeRecord]:
    """The ``k`` best distinct feasible policies of ``history``, best first.

    Best means the search's own order: higher proxy accuracy, then lower cost ratio, then
    the earlier episode. A policy recorded twice counts once (its first record).
    """
    check_shortlist(k)
    firsts: dict[tuple[int, ...], EpisodeRecord] = {}
    for rec in history:
        if rec.within_budget:
            firsts.setdefault(tuple(rec.choice), rec)
    ranked = sorted(firsts.values(), key=lambda r: (-r.accuracy, r.cost_ratio, r.episode))
    return ranked[:k]


@dataclass(frozen=True)
class Rescored:
    """One shortlisted policy with its score by the re-scoring proxy.

    Attributes:
        record: the episode that first reached the policy (its search-proxy figures).
        score: the re-scoring proxy's accuracy in [0, 1].
        rank: its place in the shortlist by the search proxy (0: the search's best).
    """

    record: EpisodeRecord
    score: float
    rank: int


def rescore(
    candidates: Sequence[EpisodeRecord], score: Callable[[Sequence[int]], float]
) -> list[Rescored]:
    """``candidates`` (best first by the search proxy) scored by ``score(choice)``, best
    first by that score; equal scores keep the search proxy's order."""
    scored = [Rescored(rec, float(score(rec.choice)), i) for i, rec in enumerate(candidates)]
    return sorted(scored, key=lambda r: (-r.score, r.rank))
