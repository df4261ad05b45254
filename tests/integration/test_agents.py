"""Contract tests of every registered search agent on a tiny generated task."""

from __future__ import annotations

import pytest

from agents.base import AGENTS, get_agent, list_agents, load_hyperparams
from agents.baselines import uniform_choice
from agents.learners import SB3Agent, wrap_env
from agents.recorder import EpisodeRecorder
from agents.refine import neighbours, refine, refine_episodes
from envs import LayerPruneEnv, PruningTask
from tests.conftest import MagnitudeProxy, fast_agent, tiny_task

EPISODES = 40
BUDGET = 0.55


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task() -> PruningTask:
    return tiny_task()


def env_fn(task: PruningTask, **kwargs: object):
    proxy = MagnitudeProxy(task.workload)
    kwargs.setdefault("budget", BUDGET)
    return lambda: LayerPruneEnv(task, proxy, **kwargs)


def test_registry_has_rl_agents_and_baselines() -> None:
    for name in ("ddpg", "td3", "sac", "ppo", "uniform", "random", "greedy"):
        assert name in AGENTS


def test_hyperparams_reject_unknown_key() -> None:
    with pytest.raises(ValueError, match="unknown hyperparameter 'nope'.*valid"):
        load_hyperparams("td3", {"nope": 1})


def test_wrap_env_rejects_unknown_action_range(task: PruningTask) -> None:
    with pytest.raises(ValueError, match="unknown action_range 'bogus'.*wall"):
        wrap_env(env_fn(task)(), action_range="bogus")


@pytest.mark.parametrize("name", list_agents())
def test_agent_records_episodes_within_budget(name: str, task: PruningTask) -> None:
    recorder = EpisodeRecorder()
    fast_agent(name).search([env_fn(task)], episodes=EPISODES, recorder=recorder, seed=1)
    if name in ("uniform", "greedy"):  # deterministic: they may stop early
        assert 1 <= recorder.episodes <= EPISODES
    else:
        assert recorder.episodes == EPISODES
    assert recorder.best is not None and recorder.best.within_budget
    assert recorder.best.cost_ratio <= BUDGET + 1e-9
    if name != "greedy":  # greedy's descent records its over-budget intermediate choices
        assert all(r.within_budget for r in recorder.history)
        assert all(r.cost_ratio <= BUDGET + 1e-9 for r in recorder.history)


@pytest.mark.parametrize("name", list_agents())
def test_agent_same_seed_same_trajectory(name: str, task: PruningTask) -> None:
    runs = []
    for _ in range(2):
        recorder = EpisodeRecorder()
        fast_agent(name).search([env_fn(task)], episodes=25, recorder=recorder, seed=3)
        runs.append([tuple(r.choice) for r in recorder.history])
    assert runs[0] == runs[1]


def test_learned_agents_explore(task: PruningTask) -> None:
    """A seed changes the trajectory of every stochastic agent (the check above can fail)."""
    for name in ("random", "ddpg", "td3", "sac", "ppo"):
        choices = []
        for seed in (0, 1):
            recorder = EpisodeRecorder()
            fast_agent(name).search([env_fn(task)], episodes=12, recorder=recorder, seed=seed)
            choices.append([tuple(r.choice) for r in recorder.history])
        assert choices[0] != choices[1], name


def test_greedy_respects_episode_limit_and_ends_within_budget(task: PruningTask) -> None:
    for limit in (2, 3, 9, 60):
        recorder = EpisodeRecorder()
        get_agent("greedy").search([env_fn(task)], episodes=limit, recorder=recorder)
        assert recorder.episodes <= limit
        # Even when the limit cuts the descent short, its last evaluation is feasible.
        assert recorder.best is not None
        assert recorder.best.cost_ratio <= BUDGET + 1e-9


def test_greedy_at_least_as_good_as_uniform(task: PruningTask) -> None:
    env = env_fn(task)()
    uniform = env.evaluate_choice(tuple(uniform_choice(task, BUDGET)))
    recorder = EpisodeRecorder()
    get_agent("greedy").search([env_fn(task)], episodes=80, recorder=recorder)
    assert recorder.best.accuracy >= uniform["accuracy"] - 0.05


def test_policy_choice_needs_training(task: PruningTask) -> None:
    agent = fast_agent("td3")
    assert isinstance(agent, SB3Agent)
    with pytest.raises(RuntimeError, match="no trained model"):
        agent.policy_choice(env_fn(task)(), budget=BUDGET)


def test_wall_range_action_spans_allowed_levels(task: PruningTask) -> None:
    """With action_range=wall, -1 and +1 give the least and greatest allowed level."""
    env = env_fn(task)()
    wrapped = wrap_env(env, action_range="wall")
    obs, _ = wrapped.reset(seed=0)
    allowed, _ = env._bounds(0)
    levels = task.decisions[0].levels
    for action, want in ((-1.0, levels[allowed].min()), (1.0, levels[allowed].max())):
        wrapped.reset(seed=0)
        wrapped.step([action])
        assert env._prev == pytest.approx(want)


def test_refine_episodes_share_and_range() -> None:
    assert refine_episodes(100, 0.2) == 20
    assert refine_episodes(100, 0.0) == 0
    assert refine_episodes(10, 0.99) == 9  # the learner keeps at least one episode
    assert refine_episodes(1, 0.5) == 0
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=f"refine_fraction must be in \\[0, 1\\), got {bad}"):
            refine_episodes(10, bad)
    with pytest.raises(ValueError, match="refine_fraction"):
        get_agent("td3", {"refine_fraction": 1.5})


def test_neighbours_are_feasible_one_level_moves(task: PruningTask) -> None:
    import numpy as np

    base = uniform_choice(task, BUDGET)
    moves = list(neighbours(task, base, BUDGET, np.random.default_rng(0)))
    assert moves and len(set(moves)) == len(moves)
    kinds = []
    for cand in moves:
        assert task.cost_ratio(cand) <= BUDGET + 1e-9
        diff = [c - b for c, b in zip(cand, base, strict=True)]
        raised = [d for d in diff if d > 0]
        lowered = [d for d in diff if d < 0]
        assert raised == [1] and len(lowered) <= 1
        kinds.append("swap" if lowered else "raise")
    # Raise moves (free accuracy) are all offered before any swap.
    assert kinds == sorted(kinds, key=lambda k: k == "swap")
    # The set of moves does not depend on the order's seed.
    assert set(neighbours(task, base, BUDGET, np.random.default_rng(7))) == set(moves)


def test_refine_improves_the_best_without_repeating(task: PruningTask) -> None:
    env = env_fn(task)()
    recorder = EpisodeRecorder()
    start = recorder.record(env.evaluate_choice(tuple(uniform_choice(task, BUDGET))))
    used = refine(env, recorder, 30, seed=0)
    assert used == 30 and recorder.episodes == 31
    choices = [tuple(r.choice) for r in recorder.history]
    assert len(set(choices)) == len(choices)
    assert all(r.within_budget for r in recorder.history)
    assert recorder.best.accuracy > start.accuracy


def test_refine_stops_when_nothing_is_left_to_try(task: PruningTask) -> None:
    """At the least cost, only a few policies are feasible: refine tries each once, stops."""
    sparsest = (0,) * len(task.decisions)
    env = env_fn(task, budget=task.cost_ratio(sparsest))()
    recorder = EpisodeRecorder()
    recorder.record(env.evaluate_choice(sparsest))
    used = refine(env, recorder, 10_000, seed=0)
    assert used < 10_000 and recorder.episodes == used + 1
    choices = [tuple(r.choice) for r in recorder.history]
    assert len(set(choices)) == len(choices)
    assert all(r.within_budget for r in recorder.history)
    assert refine(env, recorder, 10, seed=1) == 0  # nothing untried is left


def test_learned_agent_refines_its_last_episodes(task: PruningTask) -> None:
    """With refine_fraction 0.5, the second half of the episodes are new one-level moves
    around earlier feasible policies, and the run still plays exactly its episodes."""
    recorder = EpisodeRecorder()
    overrides = {"warmup_episodes": 5, "refine_fraction": 0.5}
    agent = get_agent("td3", overrides)
    agent.search([env_fn(task)], episodes=30, recorder=recorder, seed=2)
    assert recorder.episodes == 30 and agent.refined_episodes == 15
    learned, refined = recorder.history[:15], recorder.history[15:]
    seen = {tuple(r.choice) for r in learned}
    for rec in refined:
        assert tuple(rec.choice) not in seen
        assert any(
            sum(a > b for a, b in zip(rec.choice, prev, strict=True)) == 1
            and sum(a < b for a, b in zip(rec.choice, prev, strict=True)) <= 1
            for prev in seen
        )
        seen.add(tuple(rec.choice))


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("tpe", {"n_startup_trials": -1}, "n_startup_trials must be an int >= 0, got -1"),
        ("tpe", {"n_ei_candidates": 0}, "n_ei_candidates must be an int >= 1"),
        ("tpe", {"multivariate": "yes"}, "multivariate must be true or false"),
        ("tpe", {"action_range": "bogus"}, "unknown action_range 'bogus'.*wall"),
        ("cmaes", {"sigma0": 0}, "sigma0 must be a positive number or null, got 0"),
        ("cmaes", {"popsize": 1}, "popsize must be an int >= 2"),
        ("cmaes", {"restarts": "bipop"}, "unknown restarts 'bipop'; valid choices: none, ipop"),
    ],
)
def test_optuna_agents_reject_bad_hyperparameters(name: str, override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_agent(name, override)


@pytest.mark.parametrize("name", ["tpe", "cmaes"])
def test_optuna_agents_exploit_what_they_learn(name: str, task: PruningTask) -> None:
    """The sampler's model is used: later trials score better on average than the first
    ones, and one trial is exactly one recorded episode."""
    recorder = EpisodeRecorder()
    get_agent(name).search([env_fn(task)], episodes=60, recorder=recorder, seed=0)
    acc = [r.accuracy for r in recorder.history]
    assert len(acc) == 60
    assert sum(acc[-20:]) / 20 > sum(acc[:20]) / 20


def test_an_agents_hyperparameter_checks_live_on_its_class(monkeypatch):
    """check_hyperparams asks the agent's class (no list of agent names in it)."""
    from agents.base import check_hyperparams
    from agents.learners import SACAgent

    assert check_hyperparams("sac", {"ent_coef": "auto_0.1"}) == {"ent_coef": "auto_0.1"}
    with pytest.raises(ValueError, match="agent 'ddpg' hyperparameter gamma"):
        check_hyperparams("ddpg", {"gamma": 5})
    assert check_hyperparams("tpe", {"gamma": 5}) == {"gamma": 5}  # its constructor checks
    monkeypatch.setattr(SACAgent, "hyperparam_checks", {"gamma": lambda key, value: 0.25})
    assert check_hyperparams("sac", {"gamma": 1.0}) == {"gamma": 0.25}
