"""Off-the-shelf black-box optimisers as search methods: Optuna's TPE and CMA-ES samplers.

These are what a practitioner would reach for before writing an RL agent, so every agent is
benchmarked against them on the same terms: one Optuna trial is one episode, its
parameters are the episode's per-decision actions in ``[-1, 1]``, played through the same
environment, budget wall and wall-relative action mapping as the learning agents
(``action_range``), and its value is the episode's reward. Every trial is reported to the
same ``EpisodeRecorder``, so the best policy, the episode count and the evaluations are
the agents'.

Hyperparameters (``agents/hyperparams/tpe.yml``, ``cmaes.yml``) are the samplers' own
keyword arguments; the library does the optimisation, nothing here re-implements it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from agents.base import ACTION_RANGES, AGENTS, EnvFactory, SearchAgent
from agents.learners import WallRangeAction
from agents.recorder import EpisodeRecorder


def _check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


class OptunaAgent(SearchAgent):
    """One Optuna study per search, asked and told one episode at a time.

    Subclasses name the sampler (``_sampler``) and validate its keywords in ``__init__``.
    """

    name: ClassVar[str] = "optuna"
    extra = "baselines"  # Optuna, and cmaes behind CmaEsSampler

    def __init__(self, *, action_range: str = "wall", **sampler_kwargs: Any) -> None:
        super().__init__(action_range=action_range, **sampler_kwargs)
        if action_range not in ACTION_RANGES:
            raise ValueError(
                f"unknown action_range {action_range!r}; valid choices: {', '.join(ACTION_RANGES)}"
            )
        self.action_range = action_range
        self.sampler_kwargs = sampler_kwargs

    @abstractmethod
    def _sampler(self, seed: int):  # -> optuna.samplers.BaseSampler (imported lazily)
        """The Optuna sampler of one search, seeded with ``seed``."""

    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Run ``episodes`` trials; each plays one episode and is told its reward."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base = env_fns[0]()
        env = WallRangeAction(base) if self.action_range == "wall" else base
        n_decisions = len(base.task.decisions)
        study = optuna.create_study(direction="maximize", sampler=self._sampler(seed))
        env.reset(seed=seed)
        for _ in range(episodes):
            trial = study.ask()
            actions = [trial.suggest_float(f"a{t:03d}", -1.0, 1.0) for t in range(n_decisions)]
            env.reset()
            info: dict[str, Any] = {}
            for a in actions:
                _, _, done, _, info = env.step(np.asarray([a], dtype=np.float32))
            assert done, "an episode has exactly one action per decision"
            recorder.record(info)
            study.tell(trial, float(info["reward"]))
            if progress is not None:
                progress(1)


@AGENTS.register("tpe", help="Optuna's TPE sampler, one trial per episode")
class TPEAgent(OptunaAgent):
    """Tree-structured Parzen estimator (``optuna.samplers.TPESampler``).

    Hyperparameters: ``n_startup_trials`` (random trials before the model), ``multivariate``
    (model the actions jointly, as the budget couples them), ``n_ei_candidates``.
    """

    name = "tpe"

    def __init__(
        self,
        *,
        n_startup_trials: int = 10,
        multivariate: bool = True,
        n_ei_candidates: int = 24,
        action_range: str = "wall",
    ) -> None:
        _check_positive_int("n_startup_trials", n_startup_trials, minimum=0)
        _check_positive_int("n_ei_candidates", n_ei_candidates)
        if not isinstance(multivariate, bool):
            raise ValueError(f"multivariate must be true or false, got {multivariate!r}")
        super().__init__(
            action_range=action_range,
            n_startup_trials=n_startup_trials,
            multivariate=multivariate,
            n_ei_candidates=n_ei_candidates,
        )

    def _sampler(self, seed: int):
        import warnings

        import optuna

        with warnings.catch_warnings():  # multivariate TPE is flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, **self.sampler_kwargs)


@AGENTS.register("cmaes", help="Optuna's CMA-ES sampler, one trial per episode")
class CMAESAgent(OptunaAgent):
    """CMA-ES (``optuna.samplers.CmaEsSampler``, backed by the ``cmaes`` package).

    Hyperparameters: ``sigma0`` (initial step size in action units; null: Optuna's default,
    a sixth of the range), ``popsize`` (null: CMA-ES's default, 4 + 3 ln n), ``restarts``
    (``none`` or ``ipop``: restart with a larger population when it stalls).
    """

    name = "cmaes"

    def __init__(
        self,
        *,
        sigma0: float | None = None,
        popsize: int | None = None,
        restarts: str = "none",
        action_range: str = "wall",
    ) -> None:
        if sigma0 is not None and (
            isinstance(sigma0, bool) or not isinstance(sigma0, (int, float)) or not sigma0 > 0
        ):
            raise ValueError(f"sigma0 must be a positive number or null, got {sigma0!r}")
        if popsize is not None:
            _check_positive_int("popsize", popsize, minimum=2)
        if restarts not in ("none", "ipop"):
            raise ValueError(f"unknown restarts {restarts!r}; valid choices: none, ipop")
        super().__init__(
            action_range=action_range, sigma0=sigma0, popsize=popsize, restarts=restarts
        )

    def _sampler(self, seed: int):
        import warnings

        import optuna

        kw = dict(self.sampler_kwargs)
        restarts = kw.pop("restarts")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.samplers.CmaEsSampler(
                seed=seed,
                n_startup_trials=0,
                restart_strategy=None if restarts == "none" else restarts,
                # The first trial of every generation would otherwise warn that nothing
                # falls back to the independent sampler; every parameter is CMA-ES's.
                warn_independent_sampling=False,
                **kw,
            )
