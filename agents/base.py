"""The agent protocol, the agent registry and hyperparameter files."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

import yaml

from agents.recorder import EpisodeRecorder
from envs import LayerPruneEnv
from hwmodels import Registry

EnvFactory = Callable[[], LayerPruneEnv]


class SearchAgent(ABC):
    """Something that plays pruning episodes to find a good policy.

    Learning agents (SB3) and baselines share this interface and the same recorder, so
    every method is compared on the same evaluations.
    """

    name: ClassVar[str] = "abstract"

    def __init__(self, **hyperparams: Any) -> None:
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


AGENTS: Registry[SearchAgent] = Registry("agent")


def load_hyperparams(agent: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``agent`` from ``agents/hyperparams/<agent>.yml`` updated by ``overrides``.

    Unknown override keys raise ``ValueError`` naming the valid keys.
    """
    AGENTS.check(agent)
    path = resources.files("agents") / "hyperparams" / f"{agent}.yml"
    params: dict[str, Any] = yaml.safe_load(path.read_text()) if path.is_file() else {}
    params = params or {}
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ValueError(
                f"unknown hyperparameter {key!r} for agent {agent!r}; "
                f"valid: {', '.join(sorted(params)) or '(none)'}"
            )
        params[key] = value
    return params


def get_agent(name: str, overrides: dict[str, Any] | None = None) -> SearchAgent:
    """Agent ``name`` with its YAML defaults and ``overrides``."""
    return AGENTS.build(name, **load_hyperparams(name, overrides))


def list_agents() -> list[str]:
    """Names of the registered agents and baselines."""
    return AGENTS.names()
