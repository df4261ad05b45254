"""Build environments from plain names and numbers (what ``gym.make`` and configs carry)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from envs.layer_prune_env import LayerPruneEnv
from envs.proxy import PROXIES, AccuracyProxy
from envs.task import PruningTask, build_task
from envs.workload import WORKLOADS, Workload
from hwmodels import HARDWARE, get_hardware, resolve_metric
from pruning import SCHEMES, get_scheme

ENV_ID = "hwprune/LayerPrune-v0"


def _frozen(d: dict[str, Any] | None) -> str:
    """Hashable form of a parameter dict (a cache key) that ``_thawed`` restores exactly.

    JSON, because parameters hold lists (e.g. a GPU's tile menu) that a tuple of items
    could not hash.
    """
    return json.dumps(d or {}, sort_keys=True)


def _thawed(key: str) -> dict[str, Any]:
    return json.loads(key)


def validate_names(
    *, model: str, scheme: str, hardware: str, metric: str | None, proxy: str | None = None
) -> None:
    """Raise ``KeyError``/``ValueError`` naming the valid choices, before any long work."""
    import envs.proxies  # noqa: F401  registers the proxies
    import envs.workloads  # noqa: F401  registers the workloads

    WORKLOADS.check(model)
    SCHEMES.check(scheme)
    HARDWARE.check(hardware)
    if metric is not None:
        resolve_metric(metric)
    if proxy is not None:
        PROXIES.check(proxy)


@lru_cache(maxsize=8)
def _cached_workload(
    model: str, data: str | None, checkpoint: str | None, seed: int, device: str
) -> Workload:
    from envs.workloads import get_workload

    return get_workload(model, data=data, checkpoint=checkpoint, seed=seed, device=device)


@lru_cache(maxsize=16)
def _cached_task(
    model: str,
    scheme: str,
    hardware: str,
    metric: str | None,
    data: str | None,
    checkpoint: str | None,
    seed: int,
    device: str,
    scheme_params: str,
    hardware_params: str,
) -> PruningTask:
    workload = _cached_workload(model, data, checkpoint, seed, device)
    hw_params, sch_params = _thawed(hardware_params), _thawed(scheme_params)
    hw = get_hardware(hardware, **hw_params)
    sch = get_scheme(scheme, hardware=hw, **sch_params)
    if "index_format" in hw.describe() and "index_format" not in hw_params:
        hw = hw.with_params(index_format=sch.index_format)
    return build_task(workload, sch, hw, metric=metric or hw.default_metric)


def make_task(
    *,
    model: str = "digits-cnn",
    scheme: str = "balanced",
    hardware: str = "accel-kang-16",
    metric: str | None = None,
    data: str | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    scheme_params: dict[str, Any] | None = None,
    hardware_params: dict[str, Any] | None = None,
) -> PruningTask:
    """The ``PruningTask`` for a setting given by names (memoised within the process).

    The hardware charges the scheme's index format unless ``hardware_params`` sets one;
    ``metric=None`` budgets the hardware's ``default_metric``; ``device`` (``"auto"``,
    ``"cpu"``, ``"cuda"``) is where the accuracy proxies evaluate.
    """
    validate_names(model=model, scheme=scheme, hardware=hardware, metric=metric)
    return _cached_task(
        model,
        scheme,
        hardware,
        None if metric is None else resolve_metric(metric),
        None if data is None else str(data),
        None if checkpoint is None else str(checkpoint),
        int(seed),
        str(device),
        _frozen(scheme_params),
        _frozen(hardware_params),
    )


def make_proxy(task: PruningTask, proxy: str = "holdout", **params: Any) -> AccuracyProxy:
    """Accuracy proxy ``proxy`` bound to the task's workload."""
    from envs.proxies import get_proxy

    return get_proxy(proxy, workload=task.workload, **params)


def make_env(
    *,
    model: str = "digits-cnn",
    scheme: str = "balanced",
    hardware: str = "accel-kang-16",
    metric: str | None = None,
    proxy: str | AccuracyProxy = "holdout",
    budget: float = 0.5,
    budget_range: tuple[float, float] | None = None,
    reward: str = "accuracy",
    data: str | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    scheme_params: dict[str, Any] | None = None,
    hardware_params: dict[str, Any] | None = None,
    proxy_params: dict[str, Any] | None = None,
    task: PruningTask | None = None,
    **env_kwargs: Any,
) -> LayerPruneEnv:
    """Entry point of ``gym.make(ENV_ID, ...)``: a ``LayerPruneEnv`` from names.

    Pass a prebuilt ``task`` to share one across environments of a process, and a bound
    ``AccuracyProxy`` instead of a proxy name to reuse one.
    """
    proxy_name = proxy if isinstance(proxy, str) else None
    if task is None:
        validate_names(
            model=model, scheme=scheme, hardware=hardware, metric=metric, proxy=proxy_name
        )
        task = make_task(
            model=model,
            scheme=scheme,
            hardware=hardware,
            metric=metric,
            data=data,
            checkpoint=checkpoint,
            seed=seed,
            device=device,
            scheme_params=scheme_params,
            hardware_params=hardware_params,
        )
    bound = proxy if proxy_name is None else make_proxy(task, proxy_name, **(proxy_params or {}))
    return LayerPruneEnv(
        task,
        bound,
        budget=budget,
        budget_range=budget_range,
        reward=reward,
        **env_kwargs,
    )
