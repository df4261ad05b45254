"""The agent protocol, the agent registry and hyperparameter files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, ClassVar

import yaml

from agents.checks import (
    MAX_EPISODES,
    MAX_NET_WIDTH,
    REPLAY_MEMORY_SHARE,
    check_count,
    check_int,
    check_int_list,
    memory_bytes,
    number_text,
)
from agents.recorder import EpisodeRecorder
from core import Param, Registry
from envs import OBSERVATION_FEATURES, LayerPruneEnv

EnvFactory = Callable[[], LayerPruneEnv]


class SearchAgent(ABC):
    """Something that plays pruning episodes to find a good policy.

    Learning agents (SB3) and baselines share this interface and the same recorder, so
    every method is compared on the same evaluations.
    """

    name: ClassVar[str] = "abstract"
    #: The extra (``agents.extras``) whose packages the agent needs; None: none.
    extra: ClassVar[str | None] = None
    #: Key -> type and range of the hyperparameters this agent reads from its YAML file
    #: and overrides: a ``core.params.Param``, or a function ``check(key, value)`` that
    #: returns the normalised value or raises ``ValueError`` (``check_hyperparam``). Keys
    #: without one are checked by the agent's constructor.
    hyperparam_checks: ClassVar[Mapping[str, Param | Callable[[str, Any], Any]]] = {}

    def __init__(self, **hyperparams: Any) -> None:
        if self.extra is not None:
            from agents.extras import require_extra

            require_extra(self.extra, f"agent {self.name!r}")
        self.hyperparams = hyperparams
        # Episodes of the last search spent refining a found policy (agents.refine):
        # the last ones recorded. 0 for agents that do not refine.
        self.refined_episodes = 0

    @abstractmethod
    def search(
        self,
        env_fns: list[EnvFactory],
        *,
        episodes: int,
        recorder: EpisodeRecorder,
        seed: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Play ``episodes`` evaluated episodes, reporting each to ``recorder``."""


AGENTS: Registry[SearchAgent] = Registry(
    "agent", providers=("agents.baselines", "agents.learners", "agents.optuna_search")
)


# Agent-side action mappings (``agents.learners.wrap_env``).
ACTION_RANGES: tuple[str, ...] = ("wall", "layer")

_Check = Callable[[str, Any], Any]


def _positive(name: str) -> Param:
    return Param(name, "float", low=0.0, low_open=True)


def _non_negative(name: str) -> Param:
    return Param(name, "float", low=0.0)


def _unit(name: str, *, low_open: bool = False, high_open: bool = False) -> Param:
    return Param(name, "float", low=0.0, high=1.0, low_open=low_open, high_open=high_open)


def _count(name: str, minimum: int, maximum: int | None = None) -> Param:
    return Param(name, "int", low=minimum, high=maximum, ceiling=maximum is not None)


#: Bytes of one transition in an SB3 replay buffer: the observation and the next one, the
#: action, the reward, and the done and timeout flags, each float32.
TRANSITION_BYTES = 4 * (2 * len(OBSERVATION_FEATURES) + 1 + 3)


def replay_capacity() -> int:
    """Most transitions a replay buffer (or one batch drawn from it) may hold here: a
    ``REPLAY_MEMORY_SHARE`` of this machine's memory (``agents.checks.memory_bytes``)."""
    return max(1, int(REPLAY_MEMORY_SHARE * memory_bytes()) // TRANSITION_BYTES)


def _transitions(name: str, value: Any) -> int:
    """A replay buffer or batch size: an int in [1, what this machine's memory holds]."""
    return check_count(
        name,
        value,
        minimum=1,
        maximum=replay_capacity(),
        why=f"transitions of {TRANSITION_BYTES} bytes in {REPLAY_MEMORY_SHARE:.0%} of this "
        f"machine's {memory_bytes() / 2**30:.1f} GiB of memory",
    )


def _net_arch(name: str, value: Any) -> list[int]:
    widths = check_int_list(name, value, minimum=1)
    if any(w > MAX_NET_WIDTH for w in widths):
        raise ValueError(
            f"{name} must be a list of integers in [1, {MAX_NET_WIDTH}] (e.g. [64, 64]), "
            f"got {value!r}"
        )
    return widths


def _gradient_steps(name: str, value: Any) -> int:
    if value == -1 and not isinstance(value, bool):
        return -1  # SB3: as many gradient steps as environment steps
    try:
        return check_int(name, value, minimum=1)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= 1 or -1, got {value!r}") from None


# Type and range of each hyperparameter the learners read from their YAML files
# (``agents/hyperparams``); an agent class names the checks of its keys in
# ``SearchAgent.hyperparam_checks`` (the learners: these; the Optuna samplers: none, their
# constructors check their own keys).
HYPERPARAM_CHECKS: dict[str, Param | _Check] = {
    **{
        p.name: p
        for p in (
            _positive("learning_rate"),
            _positive("critic_learning_rate"),
            _positive("actor_learning_rate"),
            _unit("tau", low_open=True),
            _unit("gamma"),
            _count("warmup_episodes", 0, MAX_EPISODES),
            _non_negative("noise_sigma"),
            _unit("noise_decay", low_open=True),
            _non_negative("noise_min_sigma"),
            _count("train_freq", 1),
            _count("policy_delay", 1),
            _non_negative("target_policy_noise"),
            _non_negative("target_noise_clip"),
            Param("reward_baseline", "bool"),
            _unit("reward_baseline_decay", high_open=True),
            _positive("reward_scale"),
            Param("action_range", "choice", choices=ACTION_RANGES),
            _unit("refine_fraction", high_open=True),
            _count("rollout_episodes", 1, MAX_EPISODES),
            _count("n_epochs", 1),
            _unit("gae_lambda"),
            _positive("clip_range"),
            _non_negative("ent_coef"),
            _non_negative("vf_coef"),
            _positive("max_grad_norm"),
            Param("log_std_init", "float"),
        )
    },
    # Checks a plain Param cannot state: bounds from this machine, lists, sentinels.
    "net_arch": _net_arch,
    "batch_size": _transitions,
    "buffer_size": _transitions,
    "gradient_steps": _gradient_steps,
}


def check_hyperparam(check: Param | _Check, key: str, value: Any) -> Any:
    """``value`` of hyperparameter ``key`` checked by ``check`` (a ``Param``, or a
    function for what a Param cannot state); numbers written as text (``"1e-3"`` in a
    YAML file) count as numbers."""
    if isinstance(check, Param):
        return check.check(number_text(value) if check.kind == "float" else value)
    return check(key, value)


def check_hyperparams(agent: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of ``agent`` with numbers normalised (``"1e-3"`` -> ``0.001``).

    Raises ``ValueError`` naming the agent, the key, the bad value and the valid range,
    e.g. ``agent 'ddpg' hyperparameter gamma must be in [0, 1], got 5``.
    """
    checks = AGENTS.factory(agent).hyperparam_checks
    out = dict(params)
    for key, value in params.items():
        check = checks.get(key)
        if check is None:
            continue
        try:
            out[key] = check_hyperparam(check, key, value)
        except ValueError as exc:
            raise ValueError(f"agent {agent!r} hyperparameter {exc}") from None
    batch, buffer = out.get("batch_size"), out.get("buffer_size")
    if "batch_size" in checks and isinstance(batch, int) and isinstance(buffer, int):
        if batch > buffer:
            raise ValueError(
                f"agent {agent!r} hyperparameter batch_size {batch} must be <= buffer_size "
                f"{buffer}: a batch is drawn from the replay buffer"
            )
    return out


def load_hyperparams(agent: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``agent`` from ``agents/hyperparams/<agent>.yml`` updated by ``overrides``.

    Unknown override keys raise ``ValueError`` naming the valid keys; a value of the wrong
    type or out of range raises ``ValueError`` naming the valid range (``check_hyperparams``).
    """
    AGENTS.check(agent)
    path = resources.files("agents") / "hyperparams" / f"{agent}.yml"
    params: dict[str, Any] = yaml.safe_load(path.read_text()) if path.is_file() else {}
    params = params or {}
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError(
            f"agent hyperparameters must be a mapping of KEY: VALUE, got {overrides!r}"
        )
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ValueError(
                f"unknown hyperparameter {key!r} for agent {agent!r}; "
                f"valid: {', '.join(sorted(params)) or '(none)'}"
            )
        params[key] = value
    return check_hyperparams(agent, params)


def get_agent(name: str, overrides: dict[str, Any] | None = None) -> SearchAgent:
    """Agent ``name`` with its YAML defaults and ``overrides``."""
    return AGENTS.build(name, **load_hyperparams(name, overrides))


def list_agents() -> list[str]:
    """Names of the registered agents and baselines."""
    return AGENTS.names()
