"""The hardware-model protocol, its preset registry and the index formats it can charge."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from core.params import Schema
from core.registry import Registry
from hwmodels.cost import Cost
from hwmodels.layer import LayerSpec

# How the non-zeros of a sparse layer are located; the hardware charges the metadata
# bits of the format in storage, traffic and energy. A pruning scheme names the format
# its structure allows (``PruningScheme.index_format``).
INDEX_FORMATS: tuple[str, ...] = (
    "dense",  # no metadata: the layer is stored dense (zeros included)
    "bitmask",  # one bit per weight
    "coordinates",  # an index per non-zero, log2(fan_in) bits (CSR/COO-like)
    "n-of-m",  # ceil(log2 m) bits per kept weight (Kang; sparse tensor cores)
    "pattern-id",  # ceil(log2 P) bits per kernel (PCNN's SPM)
    "channel",  # kept channel indices only: the layer is physically smaller
    "crossbar-table",  # per-crossbar mapping table (Liang et al.)
)

# Structural parameters a pruning scheme takes from the hardware by default, so that the
# structure pruned is the structure the hardware exploits.
STRUCTURE_KEYS: tuple[str, ...] = (
    "group_size",
    "crossbar_size",
    "channel_multiple",
    "pattern_count",
)


class HardwareModel(ABC):
    """An analytic cost model of one target: pure, deterministic numpy.

    Subclasses hold their parameters in a frozen dataclass ``params``; presets are
    registered in ``HARDWARE`` and built with ``get_hardware(preset, **overrides)``.
    """

    #: Short family name ("accel-kang", "reram", ...); presets add their own name.
    family: ClassVar[str] = "abstract"
    #: The ``Cost`` field a search budgets when the user names none.
    default_metric: ClassVar[str] = "latency_s"

    def __init__(self, params: Any, *, name: str = "") -> None:
        self.params = params
        self.name = name or self.family

    @abstractmethod
    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Cost of ``layer`` with weight ``mask`` (bool, weight-shaped; None means dense)."""

    def layer_costs(self, layer: LayerSpec, masks: Sequence[np.ndarray | None]) -> list[Cost]:
        """Costs of one layer under several masks (e.g. every density level)."""
        return [self.cost(layer, m) for m in masks]

    def network_cost(
        self, layers: Sequence[LayerSpec], masks: Sequence[np.ndarray | None] | None = None
    ) -> Cost:
        """Network total; a plain sum unless the hardware overlaps layers (pipelines)."""
        masks = [None] * len(layers) if masks is None else list(masks)
        if len(masks) != len(layers):
            raise ValueError(f"got {len(masks)} masks for {len(layers)} layers")
        return sum((self.cost(layer, m) for layer, m in zip(layers, masks, strict=True)), Cost())

    def structure(self) -> dict[str, int]:
        """Structural defaults for pruning schemes (subset of ``STRUCTURE_KEYS``)."""
        return {}

    def param_schema(self) -> Schema:
        """The parameters of this model, typed by the defaults of its parameter dataclass
        (its ``__post_init__`` checks their ranges), listed in alphabetical order."""
        fields = sorted(dataclasses.fields(self.params), key=lambda f: f.name)
        return Schema.from_defaults(
            {f.name: None if f.default is dataclasses.MISSING else f.default for f in fields}
        )

    def with_params(self, **overrides: Any) -> HardwareModel:
        """Copy with some parameters replaced.

        ``ValueError`` for unknown names (listing the valid ones), for a value whose type
        differs from the parameter's default (``n_pe=abc``) and for one out of range.
        Ints pass for floats (as floats), lists for tuples (as tuples, so that the
        parameters stay hashable).
        """
        checked = self.param_schema().check(
            overrides,
            owner=f"hardware {self.name!r}",
            label=lambda key: f"hardware parameter {key!r} of {self.name!r}",
            partial=True,
        )
        try:
            params = dataclasses.replace(self.params, **checked)
        except TypeError as exc:  # a check of the parameters that met a type it did not expect
            raise ValueError(f"bad hardware parameters for {self.name!r}: {exc}") from None
        return type(self)(params, name=self.name)

    def describe(self) -> dict[str, Any]:
        """Preset name, family and parameters as plain values (for logs and MLflow)."""
        return {"name": self.name, "family": self.family, **dataclasses.asdict(self.params)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"


HARDWARE: Registry[HardwareModel] = Registry("hardware preset")


def get_hardware(preset: str, **overrides: Any) -> HardwareModel:
    """Build the hardware model registered as ``preset`` with parameter overrides."""
    hw = HARDWARE.build(preset)
    return hw.with_params(**overrides) if overrides else hw


def list_hardware() -> list[str]:
    """Names of all registered hardware presets."""
    return HARDWARE.names()
