"""The naive reference: multiply-accumulates and parameters, blind to structure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.base import HARDWARE, HardwareModel
from hwmodels.cost import Cost
from hwmodels.layer import LayerSpec
from hwmodels.maskstats import MaskStats


@dataclass(frozen=True)
class FlopsParams:
    """Parameters of the FLOPs reference.

    Attributes:
        bytes_per_weight: storage of one kept weight (no index metadata is charged).
        macs_per_second: throughput that turns MACs into a nominal latency.
        pj_per_mac: energy per MAC (Horowitz 45 nm int mult + add, 3.2 pJ).
    """

    bytes_per_weight: float = 4.0
    macs_per_second: float = 1e9
    pj_per_mac: float = 3.2


class FlopsModel(HardwareModel):
    """Cycles = kept MACs, memory = kept weights x bytes: what FLOPs-driven pruning optimises."""

    family = "flops"
    default_metric = "cycles"  # kept MACs

    def __init__(self, params: FlopsParams | None = None, *, name: str = "") -> None:
        super().__init__(params or FlopsParams(), name=name)

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Every kept weight is one MAC per output position, however it is placed."""
        nnz = MaskStats(layer, mask).nnz
        macs = float(nnz * layer.output_pixels)
        return Cost(
            cycles=macs,
            latency_s=macs / self.params.macs_per_second,
            energy_j=macs * self.params.pj_per_mac * 1e-12,
            area_mm2=0.0,
            resources=float(nnz),
            memory_bytes=nnz * self.params.bytes_per_weight,
        )


HARDWARE.register(
    "flops",
    lambda: FlopsModel(name="flops"),
    help="Naive reference: kept MACs as cycles, kept parameters as resources",
)
