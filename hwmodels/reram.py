"""ReRAM crossbar accelerator with MNSIM-style mapping and crossbar / column pruning.

The unrolled weight matrix (K = Cin * k * k rows, Cout columns; one matrix per group) is
tiled onto ``xb_rows x xb_cols`` crossbars. MNSIM 2.0 keeps whole k x k kernels in one
crossbar:

    cin_per_xb  = min(xb_rows // k^2, Cin)        cout_per_xb = min(Cout, xb_cols)
    crossbars   = ceil(Cin / cin_per_xb) * ceil(Cout / cout_per_xb) * ceil(wbits / cell_bits)

times 2 with differential (positive / negative) pairs. A row block is thus
``cin_per_xb * k^2`` consecutive entries of K (``row_block``).

What the mask saves depends on ``grain``:

- "crossbar": an all-zero (row block, column block) tile needs no crossbar;
- "column": column pruning with output recombination (Liang et al.): in each row block
  the surviving columns of all its crossbars are packed into ``ceil(surviving / xb_cols)``
  crossbars and their outputs re-associated digitally;
- "channel": all-zero input and output channels are removed and the smaller layer is
  mapped with the formula above.

All three are step functions of the mask and monotone: zeroing weights never adds a
crossbar. Every analog read of a used column ends in an ADC conversion, so
``conversions = output pixels x input bit-slices x used columns``, which dominates energy
and area (methods.md 3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwmodels.base import HARDWARE, HardwareModel
from hwmodels.cost import Cost
from hwmodels.energy import HOROWITZ_45NM
from hwmodels.formats import check_index_format, storage
from hwmodels.layer import LayerSpec
from hwmodels.maskstats import MaskStats

Grain = Literal["crossbar", "column", "channel"]
GRAINS: tuple[str, ...] = ("crossbar", "column", "channel")
MAPPINGS: tuple[str, ...] = ("kernel", "dense")
SCHEDULES: tuple[str, ...] = ("sequential", "pipelined")


@dataclass(frozen=True)
class ReramParams:
    """Parameters of the crossbar accelerator.

    Defaults: MNSIM 2.0 (128x128 crossbar, 3.16 ns read, 6-bit ADC at 1 GS/s and 1.26 mW)
    and NeuroSim (8 columns share an ADC). Figures marked *assumed* are not from a cited
    source; they are order-of-magnitude values to be overridden with a device's own.

    Attributes:
        xb_rows: crossbar rows (inputs).
        xb_cols: crossbar columns (outputs).
        mapping: "kernel" (MNSIM: whole k x k kernels per crossbar) or "dense" (rows
            packed ``xb_rows`` at a time, kernels may straddle crossbars).
        grain: what pruning removes: "crossbar", "column" or "channel" (module doc).
        weight_bits: bits per weight.
        bits_per_cell: bits one cell stores; a weight takes ``ceil(weight_bits /
            bits_per_cell)`` crossbars side by side.
        differential: positive and negative weights on a pair of crossbars.
        act_bits: bits per input activation.
        dac_bits: input bits applied per read (input bit-slices = act_bits / dac_bits).
        cols_per_adc: columns multiplexed onto one ADC.
        read_latency_s: one crossbar read.
        adc_rate_hz: ADC conversions per second.
        adc_power_w: ADC power; energy per conversion = power / rate.
        cell_read_pj: energy of reading one cell once (*assumed*: 0.1-0.2 V on a
            ~10 kOhm cell for 3.16 ns).
        dac_pj: energy of one row drive (ISAAC-derived: 4 mW for 1024 DACs at 1.28 GHz).
        shift_add_pj: digital shift-and-add per conversion (*assumed*).
        xb_area_mm2: area of one 128x128 array, scaled with the cell count (ISAAC,
            *unverified*).
        adc_area_mm2: area of one ADC (ISAAC, *unverified*).
        dac_area_mm2: area of one row driver (ISAAC, *unverified*).
        clock_hz: clock that ``cycles`` counts (latency x clock).
        schedule: "sequential" (one layer after another) or "pipelined" (every layer on
            its own crossbars, layers overlap: the network takes its slowest layer plus
            one output pixel of every other layer to fill the pipeline).
        index_format: metadata stored beside the arrays (default: a crossbar table).
    """

    xb_rows: int = 128
    xb_cols: int = 128
    mapping: str = "kernel"
    grain: Grain = "column"
    weight_bits: int = 8
    bits_per_cell: int = 2
    differential: bool = True
    act_bits: int = 8
    dac_bits: int = 1
    cols_per_adc: int = 8
    read_latency_s: float = 3.16e-9
    adc_rate_hz: float = 1e9
    adc_power_w: float = 1.26e-3
    cell_read_pj: float = 0.01
    dac_pj: float = 0.003
    shift_add_pj: float = 0.05
    xb_area_mm2: float = 2.5e-5
    adc_area_mm2: float = 1.2e-3
    dac_area_mm2: float = 1.7e-7
    clock_hz: float = 1e9
    schedule: str = "sequential"
    index_format: str = "crossbar-table"

    def __post_init__(self) -> None:
        for name in ("xb_rows", "xb_cols", "weight_bits", "bits_per_cell", "act_bits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.dac_bits <= self.act_bits:
            raise ValueError(f"dac_bits must be in [1, act_bits={self.act_bits}]")
        if not 1 <= self.cols_per_adc <= self.xb_cols:
            raise ValueError(f"cols_per_adc must be in [1, xb_cols={self.xb_cols}]")
        for name, value, valid in (
            ("grain", self.grain, GRAINS),
            ("mapping", self.mapping, MAPPINGS),
            ("schedule", self.schedule, SCHEDULES),
        ):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        check_index_format(self.index_format)

    @property
    def copies(self) -> int:
        """Physical crossbars per logical tile (weight slices x differential pair)."""
        return -(-self.weight_bits // self.bits_per_cell) * (2 if self.differential else 1)

    @property
    def input_slices(self) -> int:
        """Reads per input vector (bit-serial inputs)."""
        return -(-self.act_bits // self.dac_bits)


@dataclass(frozen=True)
class Mapping:
    """Logical crossbar usage of one layer (before weight slices and differential pairs).

    Attributes:
        crossbars: tiles of ``xb_rows x xb_cols`` holding weights.
        used_cols: columns read out (summed over tiles), each one ADC conversion per read.
        driven_rows: rows driven (summed over tiles), each one DAC drive per read.
        cells: weight cells read per read (rows x used columns, summed over tiles).
        widest: most columns used in one tile (sets the ADC multiplexing time).
    """

    crossbars: int
    used_cols: int
    driven_rows: int
    cells: int
    widest: int


def _ceil(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    return -(-np.asarray(a) // np.asarray(b))


class ReramCrossbar(HardwareModel):
    """Crossbar accelerator: crossbar counts, ADC/DAC work and area from the real mask."""

    family = "reram"
    # Crossbars work in parallel, so pruning rarely shortens latency; what it saves is
    # crossbars (and their ADCs): the resource ReRAM designs are sized by.
    default_metric = "resources"

    def __init__(self, params: ReramParams | None = None, *, name: str = "") -> None:
        super().__init__(params or ReramParams(), name=name)

    def structure(self) -> dict[str, int]:
        """Crossbar side for the crossbar/column schemes."""
        return {"crossbar_size": self.params.xb_rows}

    def row_block(self, layer: LayerSpec) -> int:
        """Entries of K one crossbar row block holds (MNSIM: whole kernels)."""
        p = self.params
        k2 = layer.kernel[0] * layer.kernel[1]
        if p.mapping == "dense" or k2 > p.xb_rows:
            return p.xb_rows
        return min(p.xb_rows // k2, layer.in_channels // layer.groups) * k2

    def col_block(self, layer: LayerSpec) -> int:
        """Output channels one crossbar column block holds."""
        return min(layer.out_channels // layer.groups, self.params.xb_cols)

    def _mnsim(self, layer: LayerSpec, cin: np.ndarray, cout: np.ndarray) -> Mapping:
        """MNSIM mapping of per-group matrices with ``cin`` inputs and ``cout`` outputs."""
        p = self.params
        k2 = layer.kernel[0] * layer.kernel[1]
        k_rows = cin * k2
        if p.mapping == "dense" or k2 > p.xb_rows:
            rb = _ceil(k_rows, p.xb_rows)
        else:
            rb = _ceil(cin, np.maximum(np.minimum(p.xb_rows // k2, cin), 1))
        cb = _ceil(cout, p.xb_cols)
        return Mapping(
            crossbars=int((rb * cb).sum()),
            used_cols=int((rb * cout).sum()),
            driven_rows=int((cb * k_rows).sum()),
            cells=int((k_rows * cout).sum()),
            widest=int(np.minimum(cout, p.xb_cols).max(initial=0)),
        )

    def mapping(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Mapping:
        """Logical crossbar usage of ``layer`` under ``mask`` with the model's grain."""
        return self._mapping(MaskStats(layer, mask))

    def _mapping(self, stats: MaskStats) -> Mapping:
        layer, p = stats.layer, self.params
        g = layer.groups
        cout_g = layer.out_channels // g
        if stats.um is None or p.grain == "channel":
            return self._mnsim(layer, stats.in_kept, stats.out_kept)
        rpb = self.row_block(layer)
        heights = np.minimum(rpb, layer.fan_in - rpb * np.arange(_ceil(layer.fan_in, rpb)))
        hit = stats.segments(rpb).reshape(g, cout_g, -1)  # (group, out channel, row block)
        if p.grain == "column":
            surviving = hit.sum(axis=1)  # (group, row block)
            xbs = _ceil(surviving, p.xb_cols)
            return Mapping(
                crossbars=int(xbs.sum()),
                used_cols=int(surviving.sum()),
                driven_rows=int((xbs * heights).sum()),
                cells=int((surviving * heights).sum()),
                widest=int(np.minimum(surviving, p.xb_cols).max(initial=0)),
            )
        cpb = self.col_block(layer)
        n_cb = -(-cout_g // cpb)
        pad = n_cb * cpb - cout_g
        if pad:
            hit = np.concatenate([hit, np.zeros((g, pad, hit.shape[2]), dtype=bool)], axis=1)
        present = hit.reshape(g, n_cb, cpb, -1).any(axis=2)  # (group, col block, row block)
        widths = np.minimum(cpb, cout_g - cpb * np.arange(n_cb))
        width_used = present * widths[None, :, None]
        return Mapping(
            crossbars=int(present.sum()),
            used_cols=int(width_used.sum()),
            driven_rows=int((present * heights[None, None, :]).sum()),
            cells=int((width_used * heights[None, None, :]).sum()),
            widest=int(width_used.max(initial=0)),
        )

    def _layer(self, layer: LayerSpec, mask: np.ndarray | None) -> tuple[Cost, float]:
        """The layer's cost and the time of one output pixel (for pipeline fill)."""
        p = self.params
        stats = MaskStats(layer, mask)
        mp = self._mapping(stats)
        copies, slices = p.copies, p.input_slices
        reads = layer.output_pixels * slices  # crossbar reads per tile
        conversions = reads * mp.used_cols * copies
        adcs_per_xb = -(-p.xb_cols // p.cols_per_adc)
        adc_steps = -(-mp.widest // adcs_per_xb)
        pixel_s = slices * (p.read_latency_s + adc_steps / p.adc_rate_hz) if mp.crossbars else 0.0
        latency = layer.output_pixels * pixel_s

        # The crossbar table indexes the tiles of this very mapping.
        st = storage(
            p.index_format,
            stats,
            tile_rows=self.row_block(layer),
            tile_cols=self.col_block(layer),
        )
        cell_bytes = mp.cells * p.weight_bits / 8
        # Inputs and outputs pass through an SRAM buffer once per output pixel.
        buffer_bits = layer.output_pixels * (layer.fan_in + layer.out_channels) * p.act_bits
        energy_pj = (
            conversions * (p.adc_power_w / p.adc_rate_hz * 1e12 + p.shift_add_pj)
            + reads * mp.driven_rows * copies * p.dac_pj
            + reads * mp.cells * copies * p.cell_read_pj
            + HOROWITZ_45NM.memory_pj("sram", buffer_bits) * (1 if mp.crossbars else 0)
        )
        physical = mp.crossbars * copies
        xb_area = (
            p.xb_area_mm2 * p.xb_rows * p.xb_cols / (128 * 128)
            + adcs_per_xb * p.adc_area_mm2
            + p.xb_rows * p.dac_area_mm2
        )
        cost = Cost(
            cycles=latency * p.clock_hz,
            latency_s=latency,
            energy_j=energy_pj * 1e-12,
            area_mm2=physical * xb_area,
            resources=float(physical),
            memory_bytes=cell_bytes + st.metadata_bits / 8,
        )
        return cost, pixel_s

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Crossbars (resources), area, ADC-dominated energy and latency of ``layer``."""
        return self._layer(layer, mask)[0]

    def network_cost(
        self, layers: Sequence[LayerSpec], masks: Sequence[np.ndarray | None] | None = None
    ) -> Cost:
        """Sum over layers; with ``schedule="pipelined"`` latency is the slowest stage + fill."""
        masks = [None] * len(layers) if masks is None else list(masks)
        if len(masks) != len(layers):
            raise ValueError(f"got {len(masks)} masks for {len(layers)} layers")
        parts = [self._layer(layer, m) for layer, m in zip(layers, masks, strict=True)]
        total = sum((c for c, _ in parts), Cost())
        if self.params.schedule == "sequential" or not parts:
            return total
        stage = max(c.latency_s for c, _ in parts)
        slowest = max(range(len(parts)), key=lambda i: parts[i][0].latency_s)
        fill = sum(px for i, (_, px) in enumerate(parts) if i != slowest)
        latency = stage + fill
        return Cost(
            cycles=latency * self.params.clock_hz,
            latency_s=latency,
            energy_j=total.energy_j,
            area_mm2=total.area_mm2,
            resources=total.resources,
            memory_bytes=total.memory_bytes,
        )


def _preset(side: int) -> ReramCrossbar:
    return ReramCrossbar(ReramParams(xb_rows=side, xb_cols=side), name=f"reram-{side}")


HARDWARE.register(
    "reram-128",
    lambda: _preset(128),
    help="ReRAM crossbars 128x128 (MNSIM mapping), column pruning with recombination",
)
HARDWARE.register(
    "reram-256",
    lambda: _preset(256),
    help="ReRAM crossbars 256x256 (MNSIM mapping), column pruning with recombination",
)
