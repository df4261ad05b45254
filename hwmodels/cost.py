"""The cost a hardware model assigns to a layer or a network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

COST_METRICS: tuple[str, ...] = (
    "latency_s",
    "cycles",
    "energy_j",
    "area_mm2",
    "resources",
    "memory_bytes",
)
# Short names accepted by the CLI and configs (``--metric latency``).
METRIC_ALIASES: dict[str, str] = {
    "latency": "latency_s",
    "energy": "energy_j",
    "area": "area_mm2",
    "memory": "memory_bytes",
    "cycles": "cycles",
    "resources": "resources",
}


#: Slack of every budget comparison: cost ratios are sums of float costs divided by the
#: dense cost, so a policy exactly at its budget may sit a rounding error above it.
BUDGET_TOLERANCE = 1e-9


def within_budget(cost_ratio: float, budget: float) -> bool:
    """Whether ``cost_ratio`` meets ``budget`` (up to ``BUDGET_TOLERANCE``): the one
    budget test of the environment's wall, the agents, the baselines and the reports."""
    return bool(cost_ratio <= budget + BUDGET_TOLERANCE)


def resolve_metric(metric: str) -> str:
    """Map a metric name or alias to a ``Cost`` field; ``ValueError`` names the choices."""
    if metric in COST_METRICS:
        return metric
    if metric in METRIC_ALIASES:
        return METRIC_ALIASES[metric]
    valid = sorted(set(METRIC_ALIASES) | set(COST_METRICS))
    raise ValueError(f"unknown cost metric {metric!r}; valid choices: {', '.join(valid)}")


@dataclass(frozen=True)
class Cost:
    """Cost of running a layer (or a network) once on a hardware model.

    Attributes:
        cycles: clock cycles of compute on the critical path.
        latency_s: wall time in seconds (max of compute and memory traffic, plus overheads).
        energy_j: energy in joules.
        area_mm2: silicon area in mm^2 the mapping occupies (0 when not modelled).
        resources: what the hardware counts (busy PEs, crossbars, SMs...).
        memory_bytes: storage of the weights: values plus index metadata.
    """

    cycles: float = 0.0
    latency_s: float = 0.0
    energy_j: float = 0.0
    area_mm2: float = 0.0
    resources: float = 0.0
    memory_bytes: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __radd__(self, other: object) -> Cost:
        # Lets ``sum(costs)`` start from the integer 0.
        if other == 0:
            return self
        return NotImplemented

    def get(self, metric: str) -> float:
        """Value of ``metric`` (a field name or an alias such as ``"latency"``)."""
        return float(getattr(self, resolve_metric(metric)))

    def as_dict(self) -> dict[str, float]:
        """Plain dict of all fields."""
        return {k: float(v) for k, v in asdict(self).items()}
