"""Learning agents built on Stable-Baselines3, all driven by one search loop.

Every agent plays the same ``LayerPruneEnv`` episodes and reports them to the same
``EpisodeRecorder``; what differs is the SB3 algorithm and its hyperparameters
(``agents/hyperparams/<name>.yml``). Agent-side options shared by all of them:

- ``action_range: wall`` maps the action ``[-1, 1]`` onto the densities the budget wall
  still allows at this step (read from the observation), instead of the layer's whole
  range; near a tight budget most of the whole range snaps to one level, so the agent
  would otherwise get no signal from most of its action space. ``layer`` keeps the env's
  own mapping (AMC's).
- ``reward_baseline`` / ``reward_scale``: the terminal reward minus a moving average of
  past rewards (AMC's variance reduction), times a scale, so that accuracy differences of
  a fraction of a percent are not lost in the critic's noise.
- ``refine_fraction``: the last share of a fixed-budget search's episodes goes to
  budget-preserving one-level moves around the best policy found (``agents.refine``):
  the learner finds the region, the moves take the last mile it leaves (measured in
  ``bench/search_quality.py``). 0 learns throughout, as AMC does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.base import ACTION_RANGES, AGENTS, HYPERPARAM_CHECKS, EnvFactory, SearchAgent
from agents.callbacks import RecorderCallback
from agents.checks import check_number
from agents.noise import DecayingNormalNoise
from agents.recorder import EpisodeRecorder
from agents.refine import check_refine_fraction, refine, refine_episodes
from agents.wrappers import MovingAverageBaseline
from envs import OBSERVATION_FEATURES, LayerPruneEnv
from tracking.run import current_run_id
from tracking.sb3_writer import MLflowOutputFormat, last_logged_step

_LO = OBSERVATION_FEATURES.index("min_density")
_HI = OBSERVATION_FEATURES.index("max_density")


class WallRangeAction(gym.Wrapper):
    """Maps the action ``[-1, 1]`` onto the densities the budget wall allows at this step.

    The wall's least and greatest allowed densities are observation features; the wrapped
    action asks for ``lo + (a + 1) / 2 * (hi - lo)``, which the env then snaps to the
    nearest allowed level. Observations, rewards and ``info`` pass through unchanged.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env and remember the first observation's wall bounds."""
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Translate the action into the env's density mapping, then step."""
        if self._obs is None:
            raise RuntimeError("step() before reset()")
        lo, hi = float(self._obs[_LO]), float(self._obs[_HI])
        a = float(np.clip(np.asarray(action, dtype=float).reshape(-1)[0], -1.0, 1.0))
        density = lo + (a + 1.0) / 2.0 * (hi - lo)
        base: LayerPruneEnv = self.env.unwrapped  # type: ignore[assignment]
        obs, reward, terminated, truncated, info = self.env.step(base.action_for_density(density))
        self._obs = obs
        return obs, reward, terminated, truncated, info


class ScaleReward(gym.RewardWrapper):
    """Multiplies rewards by a constant (``info["reward"]`` keeps the raw value)."""

    def __init__(self, env: gym.Env, scale: float = 1.0) -> None:
        super().__init__(env)
        self.scale = float(scale)

    def reward(self, reward: float) -> float:
        """The scaled reward."""
        return float(reward) * self.scale


def wrap_env(
    env: gym.Env,
    *,
    action_range: str = "layer",
    reward_baseline: bool = False,
    baseline_decay: float = 0.95,
    reward_scale: float = 1.0,
) -> gym.Env:
    """The agent-side wrappers around one env (see the module docstring)."""
    if action_range not in ACTION_RANGES:
        raise ValueError(
            f"unknown action_range {action_range!r}; valid choices: {', '.join(ACTION_RANGES)}"
        )
    if action_range == "wall":
        env = WallRangeAction(env)
    if reward_baseline:
        env = MovingAverageBaseline(env, decay=baseline_decay)
    if reward_scale != 1.0:
        env = ScaleReward(env, scale=reward_scale)
    return env


class _Wrapped:
    """Picklable factory: ``wrap_env(fn(), **options)`` (for subprocess envs)."""

    def __init__(self, fn: EnvFactory, options: dict[str, Any]) -> None:
        self.fn = fn
        self.options = options

    def __call__(self) -> gym.Env:
        return wrap_env(self.fn(), **self.options)


def make_vec_env(
    env_fns: list[EnvFactory],
    *,
    reward_baseline: bool,
    baseline_decay: float,
    action_range: str = "layer",
    reward_scale: float = 1.0,
) -> VecEnv:
    """One env in-process, several in subprocesses, each with the agent-side wrappers."""
    options = {
        "action_range": action_range,
        "reward_baseline": reward_baseline,
        "baseline_decay": baseline_decay,
        "reward_scale": reward_scale,
    }
    wrapped = [_Wrapped(fn, options) for fn in env_fns]
    if len(wrapped) == 1:
        return DummyVecEnv(wrapped)
    return SubprocVecEnv(wrapped, start_method="spawn")


def _warmup_episodes(hp: dict[str, Any], episodes: int) -> int:
    """Random-action episodes before learning: the YAML value, at most a third of the run."""
    return max(1, min(int(hp["warmup_episodes"]), max(episodes // 3, 1)))


def _noise(hp: dict[str, Any], seed: int) -> DecayingNormalNoise | None:
    sigma = float(hp.get("noise_sigma", 0.0))
    if sigma <= 0:
        return None
    return DecayingNormalNoise(
        size=1,
        sigma=sigma,
        decay=float(hp["noise_decay"]),
        min_sigma=float(hp["noise_min_sigma"]),
        seed=seed,
    )


def _sac_ent_coef(name: str, value: Any) -> Any:
    """SAC's entropy coefficient: ``auto``, ``auto_<initial>`` or a number > 0."""
    try:
        if isinstance(value, str) and (value == "auto" or value.startswith("auto_")):
            if value != "auto":
                check_number(name, value.removeprefix("auto_"), low=0.0, low_open=True, coerce=True)
            return value
        return check_number(name, value, low=0.0, low_open=True, coerce=True)
    except ValueError:
        raise ValueError(
            f"{name} must be auto, auto_<initial value> or a number > 0, got {value!r}"
        ) from None


def _sac_target_entropy(name: str, value: Any) -> Any:
    if value == "auto":
        return value
    try:
        return check_number(name, value, coerce=True)
    except ValueError:
        raise ValueError(f"{name} must be auto or a number, got {value!r}") from None


class SB3Agent(SearchAgent):
    """Shared search loop of the SB3 agents: build, learn until N episodes are recorded.

    After ``search`` the trained algorithm is kept in ``self.model``; ``policy_choice``
    then plays its deterministic policy (no exploration noise) at a given budget.
    """

    hyperparam_checks = HYPERPARAM_CHECKS
    model: BaseAlgorithm | None = None

    def __init__(self, **hyperparams: Any) -> None:
        super().__init__(**hyperparams)
        check_refine_fraction(hyperparams.get("refine_fraction", 0.0))

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """The SB3 algorithm for ``venv`` (``n_steps`` decisions per episode)."""
        raise NotImplementedError

    def _wrap_options(self) -> dict[str, Any]:
        hp = self.hyperparams
        return {
            "reward_baseline": bool(hp.get("reward_baseline", False)),
            "baseline_decay": float(hp.get("reward_baseline_decay", 0.95)),
            "action_range": str(hp.get("action_range", "layer")),
            "reward_scale": float(hp.get("reward_scale", 1.0)),
        }

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Train on the envs, then refine the best policy, ``episodes`` episodes in all.

        With a fixed budget, the last ``refine_fraction`` of the episodes go to
        ``agents.refine.refine`` (budget-preserving local moves around the best policy the
        learner found); a budget-conditioned search (``budget_range``) learns throughout.
        """
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        fraction = float(self.hyperparams.get("refine_fraction", 0.0))
        venv = make_vec_env(env_fns, **self._wrap_options())
        try:
            venv.seed(seed)
            n_steps = int(venv.get_attr("n_steps")[0])
            fixed_budget = venv.get_attr("budget_range")[0] is None
            n_refine = refine_episodes(episodes, fraction) if fixed_budget else 0
            learn_episodes = episodes - n_refine
            model = self.build(venv, n_steps, learn_episodes, seed)
            run_id = current_run_id()
            formats = []
            if run_id is not None:
                # SB3's own training figures (losses, entropy) go to the search's run.
                # A resumed search replays its training: figures already logged stay once.
                formats.append(MLflowOutputFormat(after_step=last_logged_step(run_id)))
            # Always a logger of our own: SB3's default creates a /tmp/SB3-<time> folder
            # on every learn().
            model.set_logger(Logger(folder=None, output_formats=formats))
            callback = RecorderCallback(recorder, learn_episodes, progress)
            # Margin: episodes of parallel envs finish together, PPO finishes a rollout.
            total = (learn_episodes + venv.num_envs) * n_steps
            model.learn(total_timesteps=total, callback=callback)
            self.model = model
        finally:
            venv.close()
        self.refined_episodes = 0
        if n_refine > 0:
            self.refined_episodes = refine(
                env_fns[0](), recorder, n_refine, seed=seed, progress=progress
            )

    def policy_choice(self, env: LayerPruneEnv, *, budget: float) -> dict[str, Any]:
        """Terminal ``info`` of the trained deterministic policy on ``env`` at ``budget``.

        ``env`` is a plain ``LayerPruneEnv`` (the agent-side wrappers are added here).
        Raises ``RuntimeError`` before ``search`` has trained a model.
        """
        if self.model is None:
            raise RuntimeError(f"agent {self.name!r} has no trained model; call search() first")
        options = self._wrap_options()
        options.update(reward_baseline=False, reward_scale=1.0)
        wrapped = wrap_env(env, **options)
        obs, _ = wrapped.reset(options={"budget": float(budget)})
        done, info = False, {}
        while not done:
            action, _ = self.model.predict(obs, deterministic=True)
            obs, _, done, _, info = wrapped.step(action)
        return info


class _ActorLRScale:
    """Mixin: the actor learns at its own rate (AMC: actor 1e-4, critic 1e-3).

    SB3 drives both optimisers from one schedule; the actor's rate is that schedule
    times ``actor_lr_scale``.
    """

    actor: Any

    def __init__(self, *args: Any, actor_lr_scale: float = 0.1, **kwargs: Any) -> None:
        self.actor_lr_scale = float(actor_lr_scale)
        super().__init__(*args, **kwargs)

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)  # type: ignore[misc]
        for group in self.actor.optimizer.param_groups:
            group["lr"] = group["lr"] * self.actor_lr_scale


def _actor_critic_kwargs(
    hp: dict[str, Any], n_steps: int, episodes: int, seed: int
) -> dict[str, Any]:
    """SB3 arguments DDPG and TD3 share: AMC's rates, warm-up, noise and n-step returns."""
    return {
        "learning_rate": float(hp["critic_learning_rate"]),
        "actor_lr_scale": float(hp["actor_learning_rate"]) / float(hp["critic_learning_rate"]),
        "buffer_size": int(hp["buffer_size"]),
        "learning_starts": _warmup_episodes(hp, episodes) * n_steps,
        "batch_size": int(hp["batch_size"]),
        "tau": float(hp["tau"]),
        "gamma": float(hp["gamma"]),
        "train_freq": int(hp["train_freq"]),
        "gradient_steps": int(hp["gradient_steps"]),
        "action_noise": _noise(hp, seed),
        "n_steps": n_steps,
        "policy_kwargs": {"net_arch": list(hp["net_arch"])},
        "seed": seed,
        "device": "cpu",
        "verbose": 0,
    }


class AMCDDPG(_ActorLRScale, DDPG):
    """DDPG with separate actor and critic learning rates."""


class AMCTD3(_ActorLRScale, TD3):
    """TD3 with separate actor and critic learning rates."""


@AGENTS.register("ddpg", help="DDPG with AMC's recipe (warm-up, decaying noise, gamma 1)")
class DDPGAgent(SB3Agent):
    """DDPG as in AMC: random warm-up episodes, then Gaussian exploration noise decaying per
    episode, discount 1.0 with the episode's terminal reward reaching every step through
    n-step returns over the episode length, actor and critic MLPs, tau 0.01, batch 64.
    AMC learns for every episode; here, as for every learner, the last ``refine_fraction``
    of a fixed-budget search refines the best policy (``--hp refine_fraction=0``: AMC's)."""

    name = "ddpg"

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """AMC-configured DDPG on ``venv``."""
        return AMCDDPG(
            "MlpPolicy", venv, **_actor_critic_kwargs(self.hyperparams, n_steps, episodes, seed)
        )


@AGENTS.register("td3", help="TD3: twin critics, delayed actor, AMC-style warm-up and noise")
class TD3Agent(SB3Agent):
    """TD3 (twin critics, delayed actor updates, target policy smoothing) with the same
    episode structure as ``ddpg``: random warm-up episodes, decaying Gaussian exploration
    noise, gamma 1 and n-step returns over the episode length."""

    name = "td3"

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """TD3 on ``venv``."""
        hp = self.hyperparams
        return AMCTD3(
            "MlpPolicy",
            venv,
            policy_delay=int(hp["policy_delay"]),
            target_policy_noise=float(hp["target_policy_noise"]),
            target_noise_clip=float(hp["target_noise_clip"]),
            **_actor_critic_kwargs(hp, n_steps, episodes, seed),
        )


@AGENTS.register("sac", help="SAC: entropy-regularised stochastic policy, n-step returns")
class SACAgent(SB3Agent):
    """SAC with automatic entropy tuning. Exploration comes from its stochastic policy
    (no added noise) after random warm-up episodes; gamma 1 and n-step returns over the
    episode length carry the terminal reward to every step."""

    name = "sac"
    # SAC reads ent_coef as auto or a number, and has a target entropy.
    hyperparam_checks = {
        **HYPERPARAM_CHECKS,
        "ent_coef": _sac_ent_coef,
        "target_entropy": _sac_target_entropy,
    }

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """SAC on ``venv``."""
        hp = self.hyperparams
        return SAC(
            "MlpPolicy",
            venv,
            learning_rate=float(hp["learning_rate"]),
            buffer_size=int(hp["buffer_size"]),
            learning_starts=_warmup_episodes(hp, episodes) * n_steps,
            batch_size=int(hp["batch_size"]),
            tau=float(hp["tau"]),
            gamma=float(hp["gamma"]),
            train_freq=int(hp["train_freq"]),
            gradient_steps=int(hp["gradient_steps"]),
            ent_coef=hp["ent_coef"],
            target_entropy=hp["target_entropy"],
            n_steps=n_steps,
            policy_kwargs={"net_arch": list(hp["net_arch"])},
            seed=seed,
            device="cpu",
            verbose=0,
        )


@AGENTS.register("ppo", help="PPO: on-policy, rollouts of whole episodes, Monte-Carlo returns")
class PPOAgent(SB3Agent):
    """PPO whose rollouts hold ``rollout_episodes`` whole episodes (``n_steps`` is a multiple
    of the episode length), gamma 1 and GAE lambda 1, so each step's advantage is the
    episode's terminal reward minus the critic's value estimate."""

    name = "ppo"

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """PPO on ``venv``."""
        hp = self.hyperparams
        rollout = max(1, int(hp["rollout_episodes"])) * n_steps
        batch = min(int(hp["batch_size"]), rollout * venv.num_envs)
        return PPO(
            "MlpPolicy",
            venv,
            learning_rate=float(hp["learning_rate"]),
            n_steps=rollout,
            batch_size=batch,
            n_epochs=int(hp["n_epochs"]),
            gamma=float(hp["gamma"]),
            gae_lambda=float(hp["gae_lambda"]),
            clip_range=float(hp["clip_range"]),
            ent_coef=float(hp["ent_coef"]),
            vf_coef=float(hp["vf_coef"]),
            max_grad_norm=float(hp["max_grad_norm"]),
            policy_kwargs={
                "net_arch": list(hp["net_arch"]),
                "log_std_init": float(hp["log_std_init"]),
            },
            seed=seed,
            device="cpu",
            verbose=0,
        )
