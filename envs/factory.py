"""Build environments from plain names and numbers (what ``gym.make`` and configs carry)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from core import defaults
from envs.layer_prune_env import LayerPruneEnv
from envs.proxies.base import AccuracyProxy
from envs.spec import TASK_FIELDS, TaskSpec, validate_names
from envs.task import PruningTask, build_task
from envs.workloads.base import Workload
from hwmodels import get_hardware, resolve_metric
from pruning import get_scheme

ENV_ID = "hwprune/LayerPrune-v0"


def _frozen(d: dict[str, Any] | None) -> str:
    """Hashable form of a parameter dict (a cache key) that ``_thawed`` restores exactly.

    JSON, because parameters hold lists (e.g. a GPU's tile menu) that a tuple of items
    could not hash.
    """
    return json.dumps(d or {}, sort_keys=True)


def _thawed(key: str) -> dict[str, Any]:
    return json.loads(key)


@lru_cache(maxsize=8)
def _cached_workload(
    model: str, data: str | None, checkpoint: str | None, seed: int, device: str
) -> Workload:
    from envs.workloads.builtin import get_workload

    return get_workload(model, data=data, checkpoint=checkpoint, seed=seed, device=device)


def least_cost_ratio_before_training(spec: TaskSpec) -> float:
    """The task's least achievable cost ratio, from the architecture alone.

    Built on the untrained model (random weights, nothing trained or loaded), so a budget
    no policy can meet is refused before minutes of training. Structured schemes' costs
    do not depend on the weights' values; where a cost model scores where the kept
    weights fall (unstructured masks on a lock-step PE array), the trained figure can
    differ a little, and the environment checks the budget exactly once trained.
    """
    import warnings

    from envs.workloads.builtin import UntrainedModelWarning, get_workload

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        # A checkpoint is loaded (quick, and a bad one is named first); nothing is trained.
        workload = get_workload(
            spec.model,
            data=None if spec.data is None else str(spec.data),
            checkpoint=None if spec.checkpoint is None else str(spec.checkpoint),
            train=False,
        )
    hw, sch = hardware_and_scheme(
        spec.hardware, spec.scheme, dict(spec.hardware_params), dict(spec.scheme_params)
    )
    metric = None if spec.metric is None else resolve_metric(spec.metric)
    return build_task(
        workload, sch, hw, metric=metric or hw.default_metric, keep_dense=spec.keep_dense
    ).min_cost_ratio


def hardware_and_scheme(
    hardware: str, scheme: str, hw_params: dict[str, Any], sch_params: dict[str, Any]
) -> tuple[Any, Any]:
    """The hardware model and the scheme of a task: the scheme's structure defaults to the
    hardware's, and the hardware charges the scheme's index format unless told one (the
    one place that wiring is stated: tasks and ``hwprune cost`` use it)."""
    hw = get_hardware(hardware, **hw_params)
    sch = get_scheme(scheme, hardware=hw, **sch_params)
    if "index_format" in hw.describe() and "index_format" not in hw_params:
        hw = hw.with_params(index_format=sch.index_format)
    return hw, sch


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
    keep_dense: tuple[str, ...] = (),
) -> PruningTask:
    workload = _cached_workload(model, data, checkpoint, seed, device)
    hw, sch = hardware_and_scheme(
        hardware, scheme, _thawed(hardware_params), _thawed(scheme_params)
    )
    return build_task(workload, sch, hw, metric=metric or hw.default_metric, keep_dense=keep_dense)


def make_task(spec: TaskSpec | None = None, *, seed: int = 0, device: str = "cpu") -> PruningTask:
    """The ``PruningTask`` of a ``TaskSpec`` (default: ``TaskSpec()``), memoised per process.

    The hardware charges the scheme's index format unless ``hardware_params`` sets one;
    ``metric=None`` budgets the hardware's ``default_metric``. ``seed`` is the
    workload's training seed (0: the recipe's, whose weights are committed or cached;
    another trains a model of its own), not a search's; ``device`` (``"auto"``,
    ``"cpu"``, ``"cuda"``) is where the accuracy proxies evaluate.
    """
    spec = TaskSpec() if spec is None else spec
    return _cached_task(
        spec.model,
        spec.scheme,
        spec.hardware,
        None if spec.metric is None else resolve_metric(spec.metric),
        None if spec.data is None else str(spec.data),
        None if spec.checkpoint is None else str(spec.checkpoint),
        int(seed),
        str(device),
        _frozen(spec.scheme_params),
        _frozen(spec.hardware_params),
        tuple(spec.keep_dense),
    )


def make_proxy(task: PruningTask, proxy: str = "holdout", **params: Any) -> AccuracyProxy:
    """Accuracy proxy ``proxy`` bound to the task's workload."""
    from envs.proxies.builtin import get_proxy

    return get_proxy(proxy, workload=task.workload, **params)


def make_env(
    task: PruningTask | TaskSpec | None = None,
    *,
    proxy: str | AccuracyProxy = "holdout",
    budget: float = defaults.BUDGET,
    budget_range: tuple[float, float] | None = None,
    reward: str = "accuracy",
    workload_seed: int = 0,
    device: str = "cpu",
    proxy_params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> LayerPruneEnv:
    """A ``LayerPruneEnv``; also the entry point of ``gym.make(ENV_ID, ...)``.

    ``task``: a built ``PruningTask`` (to share one across the environments of a
    process), a ``TaskSpec``, or None to take the ``TaskSpec`` fields from ``kwargs``
    (``gym.make(ENV_ID, model="digits-cnn", scheme="balanced", budget=0.5)``). ``proxy``:
    a name, or a bound ``AccuracyProxy`` to reuse one. ``workload_seed`` picks the
    workload's training seed when ``task`` is not built yet (0: the recipe's, whose
    weights are committed or cached); the environment itself is seeded by
    ``reset(seed=...)``. Other ``kwargs`` go to ``LayerPruneEnv``.
    """
    task_fields = {k: kwargs.pop(k) for k in TASK_FIELDS if k in kwargs}
    if task is None:
        task = TaskSpec(**task_fields)
    elif task_fields:
        raise TypeError(f"pass the task or its fields, not both ({', '.join(task_fields)})")
    proxy_name = proxy if isinstance(proxy, str) else None
    if proxy_name is not None:
        validate_names(proxy=proxy_name)
    if isinstance(task, TaskSpec):
        task = make_task(task, seed=workload_seed, device=device)
    bound = proxy if proxy_name is None else make_proxy(task, proxy_name, **(proxy_params or {}))
    return LayerPruneEnv(
        task, bound, budget=budget, budget_range=budget_range, reward=reward, **kwargs
    )
