"""The task an agent plays: the pruning environment, on ``envs.workloads`` (models, data,
training, recovery) and ``envs.proxies`` (accuracy proxies).

``gym.make("hwprune/LayerPrune-v0", model="digits-cnn", scheme="balanced",
hardware="accel-kang-16", budget=0.5)`` builds a ``LayerPruneEnv``.
"""

import gymnasium as gym

from envs.factory import ENV_ID, make_env, make_proxy, make_task
from envs.layer_prune_env import OBSERVATION_FEATURES, REWARD_FORMS, LayerPruneEnv
from envs.proxies.base import PROXIES, AccuracyProxy
from envs.spec import TASK_FIELDS, TaskSpec, validate_names
from envs.task import Decision, PruningTask, build_task
from envs.workloads.base import WORKLOADS, Workload


def get_workload(name: str, **kwargs: object) -> Workload:
    """Build workload ``name`` (see ``envs.workloads.builtin.get_workload``)."""
    from envs.workloads.builtin import get_workload as _get

    return _get(name, **kwargs)


def list_workloads() -> list[str]:
    """Names of the registered workloads."""
    import envs.workloads.builtin  # noqa: F401  registers them

    return WORKLOADS.names()


def get_proxy(name: str, **kwargs: object) -> AccuracyProxy:
    """Build accuracy proxy ``name`` (see ``envs.proxies.builtin.get_proxy``)."""
    from envs.proxies.builtin import get_proxy as _get

    return _get(name, **kwargs)


def list_proxies() -> list[str]:
    """Names of the registered accuracy proxies."""
    import envs.proxies.builtin  # noqa: F401  registers them

    return PROXIES.names()


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="envs.factory:make_env")

__all__ = [
    "ENV_ID",
    "TASK_FIELDS",
    "TaskSpec",
    "OBSERVATION_FEATURES",
    "PROXIES",
    "REWARD_FORMS",
    "WORKLOADS",
    "AccuracyProxy",
    "Decision",
    "LayerPruneEnv",
    "PruningTask",
    "Workload",
    "build_task",
    "get_proxy",
    "get_workload",
    "list_proxies",
    "list_workloads",
    "make_env",
    "make_proxy",
    "make_task",
    "validate_names",
]
