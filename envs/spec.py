"""``TaskSpec``: the settings that define a pruning task, in one frozen, validated value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import Param, Schema, defaults

#: ``TaskSpec``'s scalar fields: what is pruned, how, on what (names the registries check;
#: ``scheme_params`` and ``hardware_params`` are checked by the scheme's and the
#: hardware's own schemas).
TASK_PARAMS = Schema(
    (
        Param("model", "str", defaults.MODEL, help="Workload (see `hwprune list`)."),
        Param("scheme", "str", defaults.SCHEME, help="Pruning scheme."),
        Param("hardware", "str", defaults.HARDWARE, help="Hardware preset."),
        Param(
            "metric",
            "str",
            None,
            nullable=True,
            help="Budgeted cost (default: the hardware's own).",
        ),
        Param("data", "str", None, nullable=True, help="Data (default: the model's own)."),
        Param("checkpoint", "str", None, nullable=True, help="State-dict checkpoint of the model."),
    )
)


@dataclass(frozen=True)
class TaskSpec:
    """What is pruned, under which structure, costed on which hardware.

    Names and parameters only, so that it round-trips through YAML, MLflow params and
    subprocesses. Validated when built: a ``TaskSpec`` that exists has registered names,
    parameters its scheme and hardware accept (types and ranges), and an existing
    checkpoint. ``envs.make_task(spec)`` builds the ``PruningTask``.

    Attributes:
        model: workload name (``hwprune list``).
        scheme / hardware: registry names.
        metric: cost the budget is on (latency, energy, area, resources, memory, cycles);
            None: the hardware's default (latency; resources, i.e. crossbars, for ReRAM;
            cycles, i.e. kept MACs, for flops).
        data: data source (None: the model's default; see ``envs.workloads.builtin``).
        checkpoint: state-dict file of the model (None: the cached trained weights).
        scheme_params / hardware_params: overrides of the registry parameters.
        keep_dense: layers left unpruned, by name or ``first``/``last`` (checked against
            the model when the task is built).
    """

    model: str = TASK_PARAMS.default("model")
    scheme: str = TASK_PARAMS.default("scheme")
    hardware: str = TASK_PARAMS.default("hardware")
    metric: str | None = TASK_PARAMS.default("metric")
    data: str | None = TASK_PARAMS.default("data")
    checkpoint: str | None = TASK_PARAMS.default("checkpoint")
    scheme_params: dict[str, Any] = field(default_factory=dict)
    hardware_params: dict[str, Any] = field(default_factory=dict)
    keep_dense: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.keep_dense, list):  # YAML and the CLI give lists
            object.__setattr__(self, "keep_dense", tuple(self.keep_dense))
        if isinstance(self.checkpoint, Path):  # stored as text (YAML, MLflow params)
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
        self.validate()

    def validate(self) -> None:
        """``KeyError``/``ValueError`` naming the bad value and the valid choices
        (``FileNotFoundError`` for a missing checkpoint); cheap: no model is built."""
        from hwmodels import get_hardware
        from pruning.base import check_scheme_params, get_scheme

        TASK_PARAMS.check({p.name: getattr(self, p.name) for p in TASK_PARAMS})
        validate_names(
            model=self.model, scheme=self.scheme, hardware=self.hardware, metric=self.metric
        )
        check_scheme_params(self.scheme, self.scheme_params)
        # Parameter records only, no masks: catches the types and ranges of both.
        get_scheme(
            self.scheme,
            hardware=get_hardware(self.hardware, **self.hardware_params),
            **self.scheme_params,
        )
        if not isinstance(self.keep_dense, tuple) or not all(
            isinstance(n, str) and n for n in self.keep_dense
        ):
            raise ValueError(
                f"keep_dense must be a list of layer names (or first/last), got {self.keep_dense!r}"
            )
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {self.checkpoint!r} does not exist")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (YAML, MLflow params)."""
        return {**dataclasses.asdict(self), "keep_dense": list(self.keep_dense)}


#: Field names of ``TaskSpec`` (what ``gym.make`` keywords may carry for the task).
TASK_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TaskSpec))


def validate_names(
    *,
    model: str | None = None,
    scheme: str | None = None,
    hardware: str | None = None,
    metric: str | None = None,
    proxy: str | None = None,
) -> None:
    """Raise ``KeyError``/``ValueError`` naming the valid choices, before any long work."""
    import envs.proxies.builtin  # noqa: F401  registers the proxies
    import envs.workloads.builtin  # noqa: F401  registers the workloads
    from envs.proxies.base import PROXIES
    from envs.workloads.base import WORKLOADS
    from hwmodels import HARDWARE, resolve_metric
    from pruning import SCHEMES

    if model is not None:
        WORKLOADS.check(model)
    if scheme is not None:
        SCHEMES.check(scheme)
    if hardware is not None:
        HARDWARE.check(hardware)
    if metric is not None:
        resolve_metric(metric)
    if proxy is not None:
        PROXIES.check(proxy)
