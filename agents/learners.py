"""Learning agents built on Stable-Baselines3, all driven by one search loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3 import DDPG
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.base import AGENTS, EnvFactory, SearchAgent
from agents.callbacks import RecorderCallback
from agents.noise import DecayingNormalNoise
from agents.recorder import EpisodeRecorder
from agents.wrappers import MovingAverageBaseline


class AMCDDPG(DDPG):
    """DDPG whose actor learns at its own rate (AMC: actor 1e-4, critic 1e-3).

    SB3 drives both optimisers from one schedule; the actor's rate is that schedule
    times ``actor_lr_scale``.
    """

    def __init__(self, *args: Any, actor_lr_scale: float = 0.1, **kwargs: Any) -> None:
        self.actor_lr_scale = float(actor_lr_scale)
        super().__init__(*args, **kwargs)

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)
        for group in self.actor.optimizer.param_groups:
            group["lr"] = group["lr"] * self.actor_lr_scale


def make_vec_env(
    env_fns: list[EnvFactory], *, reward_baseline: bool, baseline_decay: float
) -> VecEnv:
    """One env in-process, several in subprocesses; optional AMC reward baseline."""

    def wrap(fn: EnvFactory) -> Callable[[], Any]:
        if not reward_baseline:
            return fn
        return lambda: MovingAverageBaseline(fn(), decay=baseline_decay)

    wrapped = [wrap(fn) for fn in env_fns]
    if len(wrapped) == 1:
        return DummyVecEnv(wrapped)
    return SubprocVecEnv(wrapped, start_method="spawn")


class SB3Agent(SearchAgent):
    """Shared search loop of the SB3 agents: build, learn until N episodes are recorded."""

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """The SB3 algorithm for ``venv`` (``n_steps`` decisions per episode)."""
        raise NotImplementedError

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Train on the envs until ``episodes`` episodes have been recorded."""
        hp = self.hyperparams
        venv = make_vec_env(
            env_fns,
            reward_baseline=bool(hp.get("reward_baseline", False)),
            baseline_decay=float(hp.get("reward_baseline_decay", 0.95)),
        )
        try:
            venv.seed(seed)
            n_steps = int(venv.get_attr("n_steps")[0])
            model = self.build(venv, n_steps, episodes, seed)
            callback = RecorderCallback(recorder, episodes, progress)
            # Extra margin: episodes of parallel envs finish together.
            total = (episodes + venv.num_envs) * n_steps
            model.learn(total_timesteps=total, callback=callback)
        finally:
            venv.close()


@AGENTS.register("ddpg", help="DDPG with AMC's recipe (warm-up, decaying noise, gamma 1)")
class DDPGAgent(SB3Agent):
    """DDPG as in AMC: random warm-up episodes, then Gaussian exploration noise decaying per
    episode, discount 1.0 with the episode's terminal reward reaching every step through
    n-step returns, actor and critic 300-300 MLPs, tau 0.01, batch 64."""

    name = "ddpg"

    def build(self, venv: VecEnv, n_steps: int, episodes: int, seed: int) -> BaseAlgorithm:
        """AMC-configured DDPG on ``venv``."""
        hp = self.hyperparams
        warmup = min(int(hp["warmup_episodes"]), max(episodes // 3, 1))
        noise = DecayingNormalNoise(
            size=1,
            sigma=float(hp["noise_sigma"]),
            decay=float(hp["noise_decay"]),
            min_sigma=float(hp["noise_min_sigma"]),
            seed=seed,
        )
        return AMCDDPG(
            "MlpPolicy",
            venv,
            learning_rate=float(hp["critic_learning_rate"]),
            actor_lr_scale=float(hp["actor_learning_rate"]) / float(hp["critic_learning_rate"]),
            buffer_size=int(hp["buffer_size"]),
            learning_starts=warmup * n_steps,
            batch_size=int(hp["batch_size"]),
            tau=float(hp["tau"]),
            gamma=float(hp["gamma"]),
            train_freq=int(hp["train_freq"]),
            gradient_steps=int(hp["gradient_steps"]),
            action_noise=noise,
            n_steps=n_steps,
            policy_kwargs={"net_arch": list(hp["net_arch"])},
            seed=seed,
            device="cpu",
            verbose=0,
        )
