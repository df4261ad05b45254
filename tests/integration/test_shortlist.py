"""The shortlist re-scoring that ends a search (agents.app.shortlist and the search loop)."""

from __future__ import annotations

import mlflow
import pytest

from agents import SearchConfig, run_search
from agents.app.shortlist import check_shortlist, rescore, shortlist
from agents.recorder import EpisodeRecord


def _rec(episode: int, accuracy: float, choice: list[int], *, cost: float = 0.5, ok: bool = True):
    return EpisodeRecord(
        episode=episode,
        accuracy=accuracy,
        reward=accuracy,
        cost_ratio=cost,
        density=cost,
        budget=0.5,
        within_budget=ok,
        densities={},
        choice=choice,
        cost={},
    )


HISTORY = [
    _rec(0, 0.80, [0, 0]),
    _rec(1, 0.95, [1, 1], ok=False),  # over budget: never shortlisted
    _rec(2, 0.90, [1, 0], cost=0.48),
    _rec(3, 0.90, [0, 1], cost=0.45),  # same accuracy, cheaper: ranks first
    _rec(4, 0.90, [1, 0], cost=0.48),  # a repeat of episode 2's policy
    _rec(5, 0.70, [2, 0]),
]


def test_shortlist_is_the_best_distinct_feasible_policies_in_the_search_order():
    top = shortlist(HISTORY, 3)
    assert [r.episode for r in top] == [3, 2, 0]
    assert [r.episode for r in shortlist(HISTORY, 10)] == [3, 2, 0, 5]
    assert shortlist(HISTORY, 0) == []


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_shortlist_size_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="shortlist must be an integer >= 0"):
        check_shortlist(bad)


def test_rescore_orders_by_the_new_score_and_breaks_ties_by_the_search_order():
    top = shortlist(HISTORY, 4)
    scores = {(0, 1): 0.5, (1, 0): 0.7, (0, 0): 0.7, (2, 0): 0.6}
    ranked = rescore(top, lambda choice: scores[tuple(choice)])
    # (1, 0) and (0, 0) tie at 0.7: the search ranked (1, 0) higher (rank 1 vs 2).
    assert [(tuple(r.record.choice), r.rank, r.score) for r in ranked] == [
        ((1, 0), 1, 0.7),
        ((0, 0), 2, 0.7),
        ((2, 0), 3, 0.6),
        ((0, 1), 0, 0.5),
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"shortlist": -2}, "shortlist must be an integer >= 0"),
        ({"shortlist_proxy": "finetun"}, "Did you mean 'finetune'"),
        ({"shortlist": 2, "shortlist_params": {"stepz": 1}}, "unknown parameter(s) stepz"),
        ({"shortlist": 2, "budgets": [0.3, 0.6]}, "applies to a fixed-budget search"),
    ],
)
def test_config_rejects_a_bad_shortlist(settings, message):
    with pytest.raises((KeyError, ValueError)) as err:
        SearchConfig.from_dict(settings)
    assert message in str(err.value)


@pytest.mark.slow
def test_search_keeps_the_shortlist_pick_and_logs_every_candidate():
    config = SearchConfig(
        agent="random",
        episodes=10,
        seed=3,
        shortlist=4,
        shortlist_params={"steps": 3},
        experiment="test-shortlist",
    )
    result = run_search(config, command="pytest")
    logged = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/shortlist.json")
    cands = logged["candidates"]
    assert logged["proxy"] == "finetune" and 1 <= len(cands) <= 4
    # Candidates are the search's best distinct feasible policies, best first by the new
    # score; the kept policy is the first of them.
    scores = [c["shortlist_accuracy"] for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert sorted(c["search_rank"] for c in cands) == list(range(len(cands)))
    assert result.best.choice == cands[0]["choice"]
    assert result.best.episode == cands[0]["episode"]
    policy = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/best_policy.json")
    assert policy["holdout_accuracy"] == pytest.approx(cands[0]["search_accuracy"])
    metrics = mlflow.get_run(result.run_id).data.metrics
    assert metrics["shortlist/size"] == len(cands)
    assert metrics["shortlist/pick_search_rank"] == cands[0]["search_rank"]
    assert metrics["shortlist/pick_accuracy"] == pytest.approx(scores[0])
    by_rank = {c["search_rank"]: c["shortlist_accuracy"] for c in cands}
    assert metrics["shortlist/search_best_accuracy"] == pytest.approx(by_rank[0])
