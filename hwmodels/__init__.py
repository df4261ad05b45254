"""Analytic hardware cost models (numpy only, never torch).

``get_hardware(preset, **overrides).cost(layer, mask) -> Cost``; presets are listed by
``list_hardware()``.
"""

from hwmodels.base import HARDWARE, INDEX_FORMATS, HardwareModel, get_hardware, list_hardware
from hwmodels.cost import (
    BUDGET_TOLERANCE,
    COST_METRICS,
    METRIC_ALIASES,
    Cost,
    resolve_metric,
    within_budget,
)
from hwmodels.layer import LayerSpec, unroll

# Importing the model modules registers their presets.
from hwmodels import presets as _presets  # noqa: E402,F401  isort: skip

__all__ = [
    "BUDGET_TOLERANCE",
    "within_budget",
    "COST_METRICS",
    "HARDWARE",
    "INDEX_FORMATS",
    "METRIC_ALIASES",
    "Cost",
    "HardwareModel",
    "LayerSpec",
    "get_hardware",
    "list_hardware",
    "resolve_metric",
    "unroll",
]
