"""LayerPruneEnv: the Gymnasium contract, the budget wall, rewards, determinism."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from envs import ENV_ID, REWARD_FORMS, LayerPruneEnv, PruningTask, build_task
from hwmodels import get_hardware, list_hardware
from pruning import get_scheme, list_schemes
from tests.conftest import KeptMagnitudeProxy


@pytest.fixture(scope="module")
def task(tiny_workload) -> PruningTask:
    hw = get_hardware("accel-kang-16")
    return build_task(tiny_workload, get_scheme("balanced", hardware=hw), hw, metric="latency")


def play(env: LayerPruneEnv, actions: np.ndarray) -> dict:
    env.reset()
    for a in actions:
        _, _, done, truncated, info = env.step(np.array([a], dtype=np.float32))
        assert not truncated
    assert done
    return info


def test_env_passes_gymnasium_and_sb3_checkers_without_warnings(task, kept_magnitude_proxy):
    env = gym.make(ENV_ID, task=task, proxy=kept_magnitude_proxy, budget=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped, warn=True)


def test_tables_are_computed_once_per_decision(task):
    for d in task.decisions:
        assert len(d.masks) == len(d.levels) == len(d.costs) == len(d.metric)
        assert d.levels[-1] == 1.0 and np.all(np.diff(d.levels) > 0)
        assert d.metric.min() < d.metric[-1]  # pruning saves cost somewhere
    assert 0 < task.min_cost_ratio < 1


def test_observation_is_bounded_and_budget_is_visible(task, kept_magnitude_proxy):
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=0.6)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["budget"] == 0.6
    assert obs[list(env.observation_space.shape)[0] - 4] == pytest.approx(0.6)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(budget=st.floats(0.3, 1.0), seed=st.integers(0, 10_000))
def test_random_episodes_always_end_within_budget(task, kept_magnitude_proxy, budget, seed):
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=budget)
    rng = np.random.default_rng(seed)
    info = play(env, rng.uniform(-1, 1, size=env.n_steps))
    assert info["within_budget"] and info["cost_ratio"] <= budget + 1e-9
    for d, j in zip(task.decisions, info["choice"], strict=True):
        assert d.levels[0] <= d.levels[j] <= 1.0


@pytest.mark.parametrize("scheme", list_schemes())
def test_wall_holds_for_every_scheme(tiny_workload, kept_magnitude_proxy, scheme):
    hw = get_hardware("accel-kang-16")
    sch = get_scheme(scheme, hardware=hw)
    try:
        task = build_task(tiny_workload, sch, hw)
    except ValueError as exc:  # a scheme may leave this tiny net entirely dense
        assert "nothing to search" in str(exc)
        return
    budget = min(1.0, task.min_cost_ratio + 0.5 * (1 - task.min_cost_ratio))
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=budget)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert play(env, rng.uniform(-1, 1, size=env.n_steps))["within_budget"]
    # Asking for the least density everywhere reaches close to the least achievable cost.
    low = LayerPruneEnv(task, kept_magnitude_proxy, budget=task.min_cost_ratio)
    assert play(low, -np.ones(low.n_steps))["cost_ratio"] <= task.min_cost_ratio + 1e-9


def test_dense_actions_use_the_budget_and_sparse_actions_are_walled(task, kept_magnitude_proxy):
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=0.5)
    info = play(env, np.ones(env.n_steps))
    assert 0.35 <= info["cost_ratio"] <= 0.5
    # With budget 1 nothing constrains: all-ones actions keep the network dense.
    full = LayerPruneEnv(task, kept_magnitude_proxy, budget=1.0)
    assert play(full, np.ones(full.n_steps))["density"] == pytest.approx(1.0)


def test_budget_below_least_achievable_is_rejected_with_the_least_value(task, kept_magnitude_proxy):
    least = task.min_cost_ratio
    with pytest.raises(ValueError, match=f"least achievable cost ratio {least:.4f}"):
        LayerPruneEnv(task, kept_magnitude_proxy, budget=least / 2)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            LayerPruneEnv(task, kept_magnitude_proxy, budget=bad)
    with pytest.raises(ValueError, match="unknown reward 'bogus'.*accuracy"):
        LayerPruneEnv(task, kept_magnitude_proxy, reward="bogus")


def test_same_seed_same_trajectory(task, kept_magnitude_proxy):
    def rollout(seed: int) -> list:
        env = LayerPruneEnv(task, kept_magnitude_proxy, budget_range=(0.4, 0.9))
        env.reset(seed=seed)
        obs_log = []
        rng = np.random.default_rng(seed)
        for _ in range(3):
            obs, _ = env.reset()
            done = False
            while not done:
                obs, r, done, _, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
                obs_log.append(obs.copy())
            obs_log.append((info["budget"], info["choice"], r))
        return obs_log

    a, b = rollout(3), rollout(3)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
    assert rollout(4)[-1] != a[-1]


@pytest.mark.parametrize("reward", REWARD_FORMS)
def test_reward_forms_prefer_higher_accuracy(task, kept_magnitude_proxy, reward):
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=0.6, reward=reward)
    env.reset(seed=0)
    dense_choice = tuple(len(d.levels) - 1 for d in task.decisions)
    sparse_choice = tuple(0 for _ in task.decisions)
    hi, lo = env.evaluate_choice(dense_choice), env.evaluate_choice(sparse_choice)
    assert hi["accuracy"] > lo["accuracy"]
    if reward == "accuracy":
        assert hi["reward"] == hi["accuracy"]
    if reward == "lagrangian":
        # Dense is over a 0.6 budget: penalised below its accuracy.
        assert hi["reward"] < hi["accuracy"] and not hi["within_budget"]


def test_terminal_info_carries_every_metric(task, kept_magnitude_proxy):
    env = LayerPruneEnv(task, kept_magnitude_proxy, budget=0.7)
    info = play(env, np.zeros(env.n_steps))
    for key in ("accuracy", "cost_ratio", "density", "densities", "choice", "cost", "budget"):
        assert key in info
    assert set(info["densities"]) == {layer.name for layer in task.layers}
    assert set(info["cost"]) >= {"latency_s", "energy_j", "cycles", "memory_bytes"}
    assert info["cost_ratio"] == pytest.approx(task.cost_ratio(info["choice"]))


def test_exact_cost_matches_tables_for_separable_schemes(task):
    rng = np.random.default_rng(1)
    for _ in range(5):
        choice = [int(rng.integers(len(d.levels))) for d in task.decisions]
        assert task.cost_ratio(choice) == pytest.approx(task.table_cost_ratio(choice), rel=1e-9)


def test_exact_cost_sees_channels_removed_from_the_next_layer(tiny_workload):
    hw = get_hardware("flops")
    task = build_task(tiny_workload, get_scheme("channel", channel_multiple=8), hw, metric="cycles")
    first = [0] + [len(d.levels) - 1 for d in task.decisions[1:]]
    # Pruning the first conv's outputs also removes the second conv's inputs: the exact
    # network cost is below what the per-decision tables (own outputs only) account.
    assert task.cost_ratio(first) < task.table_cost_ratio(first) < 1.0


@pytest.mark.parametrize("hardware", list_hardware())
def test_coupled_channel_episodes_end_within_budget_on_exact_cost(
    tiny_workload, kept_magnitude_proxy, hardware
):
    hw = get_hardware(hardware)
    task = build_task(tiny_workload, get_scheme("channel", channel_multiple=8), hw)
    assert task.ledger.coupled
    if task.min_cost_ratio >= 1.0 - 1e-9:
        pytest.skip(f"channel pruning saves no {task.metric} on {hardware} for this net")
    rng = np.random.default_rng(0)
    for frac in (0.1, 0.5, 0.9):
        budget = task.min_cost_ratio + frac * (1 - task.min_cost_ratio)
        env = LayerPruneEnv(task, kept_magnitude_proxy, budget=budget)
        for _ in range(15):
            info = play(env, rng.uniform(-1, 1, size=env.n_steps))
            # cost_ratio is the hardware's exact network cost on the completed masks.
            assert info["cost_ratio"] <= budget + 1e-9, (hardware, budget, info["choice"])


_TASKS: dict[tuple[str, str, str], PruningTask] = {}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    network=st.sampled_from(["tiny", "tiny-residual"]),
    scheme=st.sampled_from(list_schemes()),
    hardware=st.sampled_from(["accel-kang-16", "gpu-jetson-tx2", "reram-128", "flops"]),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_wall_property_over_networks_schemes_hardware_and_budgets(
    tiny_workload, residual_workload, network, scheme, hardware, frac, seed
):
    """Random actions at a random feasible budget: within budget, never below a level."""
    key = (network, scheme, hardware)
    if key not in _TASKS:
        workload = tiny_workload if network == "tiny" else residual_workload
        hw = get_hardware(hardware)
        try:
            _TASKS[key] = build_task(workload, get_scheme(scheme, hardware=hw), hw)
        except ValueError as exc:
            assert "nothing to search" in str(exc)
            _TASKS[key] = None
    task = _TASKS[key]
    if task is None:
        return
    budget = min(1.0, task.min_cost_ratio + frac * (1.0 - task.min_cost_ratio))
    proxy = KeptMagnitudeProxy(task.workload)
    env = LayerPruneEnv(task, proxy, budget=budget)
    env.reset(seed=seed)
    info = play(env, np.random.default_rng(seed).uniform(-1, 1, size=env.n_steps))
    assert info["cost_ratio"] <= budget + 1e-9
    for d, j in zip(task.decisions, info["choice"], strict=True):
        assert d.levels[0] <= d.levels[j] <= 1.0


def test_channel_density_counts_the_inputs_removed_downstream(tiny_workload):
    import copy

    from pruning import apply_masks, make_permanent

    hw = get_hardware("flops")
    task = build_task(tiny_workload, get_scheme("channel", channel_multiple=8), hw)
    choice = [0] * len(task.decisions)  # the fewest channels everywhere
    layers = task.layers
    total = sum(layer.params for layer in layers)
    levels = task.densities(choice)
    by_levels = sum(levels[layer.name] * layer.params for layer in layers) / total
    pruned = make_permanent(apply_masks(copy.deepcopy(tiny_workload.model), task.masks(choice)))
    nonzero = sum(int((pruned.get_submodule(layer.name).weight != 0).sum()) for layer in layers)
    assert task.overall_density(choice) == pytest.approx(nonzero / total)
    assert task.overall_density(choice) < by_levels  # inputs of removed channels go too


@pytest.mark.parametrize("scheme_name", list_schemes())
def test_uniform_densities_get_the_level_snap_gives(tiny_workload, scheme_name):
    """A uniform policy's request (the baselines' and benchmarks' ``uniform``) gets the
    level a mask at that density gets, never a whole level below (0.1 on the 4,608-weight
    conv once kept 5%)."""
    hw = get_hardware("accel-kang-16")
    scheme = get_scheme(scheme_name, hardware=hw)
    try:
        task = build_task(tiny_workload, scheme, hw)
    except ValueError as exc:  # a scheme may leave this tiny net entirely dense
        assert "nothing to search" in str(exc)
        return
    for want in (0.1, 0.25, 0.3, 0.5, 0.7):
        choice = task.choice_for_densities({d.name: want for d in task.decisions})
        for d, idx in zip(task.decisions, choice, strict=True):
            if len(scheme.floors(d.layers[0])) != len(d.levels):
                continue  # a coupled group's own levels
            assert d.levels[idx] == pytest.approx(scheme.snap(want, d.layers[0])), (d.name, want)


def test_keep_dense_leaves_named_layers_out_of_the_search(tiny_workload):
    hw = get_hardware("accel-kang-16")
    scheme = get_scheme("balanced", hardware=hw)
    full = build_task(tiny_workload, scheme, hw)
    kept = build_task(tiny_workload, scheme, hw, keep_dense=("first", "3"))
    first = full.layers[0].name
    assert {d.name for d in full.decisions} - {d.name for d in kept.decisions} == {first, "3"}
    assert {first, "3"} <= {layer.name for layer in kept.fixed_layers}
    least = [0] * len(kept.decisions)
    densities = kept.densities(least)
    assert densities[first] == densities["3"] == 1.0
    assert f"{first}.weight" not in kept.masks(least)
    # Kept dense costs what the dense layer costs: the least policy costs more than before.
    assert kept.cost_ratio(least) > full.cost_ratio([0] * len(full.decisions))


def test_keep_dense_names_an_unknown_layer_and_the_valid_ones(tiny_workload):
    hw = get_hardware("accel-kang-16")
    with pytest.raises(ValueError, match=r"no layer 'frist'; valid choices: first, last, 0, "):
        build_task(tiny_workload, get_scheme("balanced", hardware=hw), hw, keep_dense=["frist"])


def test_keep_dense_keeps_a_coupled_group_whole(residual_workload):
    hw = get_hardware("gpu-jetson-tx2")
    scheme = get_scheme("channel", channel_multiple=8)
    full = build_task(residual_workload, scheme, hw)
    group = next(d for d in full.decisions if len(d.layers) > 1)
    kept = build_task(residual_workload, scheme, hw, keep_dense=[group.layers[0].name])
    assert all(d.name != group.name for d in kept.decisions)
    dense = kept.densities([0] * len(kept.decisions))
    assert all(dense[layer.name] == 1.0 for layer in group.layers)
