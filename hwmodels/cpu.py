"""CPU target whose latency is measured, not modelled: a per-layer table, interpolated.

``hwprune profile-cpu`` times a workload's real layers (ONNX Runtime or torch, with this
machine's threads) over a grid of output and input channel counts and writes a latency
table (``hwmodels.latency_table``; NetAdapt's and AMC's measured look-up tables). The
model reads a layer's latency from the table at its kept channel counts (bilinear
between measured counts by default; the grid's step is the channel multiple the channel
scheme prunes to, so pruned layers fall on measured points; ONNX Runtime's CPU
convolutions block channels by the vector width, so counts off that multiple take
slower paths). A dense CPU kernel cannot
skip scattered zeros, so, as on a GPU, only whole channels count: all-zero output
channels and input channels no kept weight reads are removed.

Layers whose shape the table does not hold fall back to ``overhead + MACs / rate``, with
the overhead and the rate fitted (least squares) to the table's own measurements, or the
``*_fallback`` parameters when there is no table. The table's ``run_overhead_s`` (one
empty inference call, measured apart and subtracted from every entry) is not charged: a
network pays it once, and a constant outside the per-layer sum would break the budget
wall's layer-by-layer accounting.

The default table (``hwmodels/tables/cpu.json``) was measured on the 2-core machine this
project is developed on, one ONNX Runtime thread, for fashion-cnn and digits-cnn at
batch 1 and 64: it is that machine's truth, not yours; profile your own and pass
``latency_table=...``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwmodels.base import HARDWARE, HardwareModel
from hwmodels.cost import Cost
from hwmodels.formats import check_index_format, storage
from hwmodels.latency_table import STEPS, LatencyTable, load_latency_table
from hwmodels.layer import LayerSpec
from hwmodels.maskstats import MaskStats

_TABLE = Path(__file__).resolve().parent / "tables" / "cpu.json"
#: The table shipped with the package ("" if an installation left it out).
DEFAULT_TABLE = str(_TABLE) if _TABLE.is_file() else ""


@dataclass(frozen=True)
class CpuParams:
    """Parameters of the measured CPU model.

    Attributes:
        latency_table: path of a measured table (``hwprune profile-cpu``); "" = the
            fallback formula only.
        table_step: "linear" (bilinear between measured channel counts), "lower" or
            "upper" (staircase).
        batch: images per inference; 0 keeps the layer's batch (1 for the CLI's
            workloads). The table must hold entries at that batch.
        channel_multiple: channel multiple channel pruning keeps; 0 = the table's grid
            step (``profile-cpu`` picks the vector width: 16 fp32 lanes with AVX-512,
            8 with AVX2), or 8 without a table.
        macs_per_s_fallback: MAC rate of the fallback when there is no table (*assumed*:
            one AVX2 core at a few GMAC/s).
        overhead_s_fallback: per-layer overhead of the fallback without a table
            (*assumed*).
        power_w: package power drawn while a layer runs (*assumed*), for energy.
        clock_hz: clock ``cycles`` counts (latency x clock).
        bytes_per_element: data type width (4 = float32).
        index_format: how the weights are stored ("channel": the compacted dense layer).
    """

    latency_table: str = DEFAULT_TABLE
    table_step: str = "linear"
    batch: int = 0
    channel_multiple: int = 0
    macs_per_s_fallback: float = 4e9
    overhead_s_fallback: float = 5e-6
    power_w: float = 15.0
    clock_hz: float = 2.5e9
    bytes_per_element: int = 4
    index_format: str = "channel"

    def __post_init__(self) -> None:
        if self.batch < 0:
            raise ValueError(f"batch must be >= 0, got {self.batch}")
        if self.bytes_per_element < 1 or self.channel_multiple < 0:
            raise ValueError("bytes_per_element must be >= 1 and channel_multiple >= 0")
        for name in ("macs_per_s_fallback", "clock_hz"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.overhead_s_fallback < 0 or self.power_w < 0:
            raise ValueError("overhead_s_fallback and power_w must be >= 0")
        if self.table_step not in STEPS:
            raise ValueError(f"unknown table_step {self.table_step!r}; valid: {', '.join(STEPS)}")
        check_index_format(self.index_format)
        if self.latency_table and not Path(self.latency_table).is_file():
            raise ValueError(f"latency table {self.latency_table!r} does not exist")


def entry_macs(key: tuple, out_channels: int, in_channels: int) -> int:
    """MACs of a table entry's layer (``latency_table.shape_key`` order) at given counts."""
    kind, kernel, stride, padding, groups, in_hw, batch = key
    if kind == "linear":
        return batch * in_hw[0] * in_hw[1] * out_channels * in_channels
    out_hw = [(in_hw[i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in (0, 1)]
    pixels = batch * out_hw[0] * out_hw[1]
    return pixels * out_channels * (in_channels // groups) * kernel[0] * kernel[1]


_FITS: dict[int, tuple[LatencyTable, tuple[float, float]]] = {}


def fit_fallback(table: LatencyTable) -> tuple[float, float]:
    """(overhead s, MACs per s) of ``latency = overhead + MACs / rate`` fitted to a table."""
    hit = _FITS.get(id(table))
    if hit is not None and hit[0] is table:
        return hit[1]
    macs, lat = [], []
    for key, grid in table.grids.items():
        for i, cout in enumerate(grid.out_channels):
            for j, cin in enumerate(grid.in_channels):
                macs.append(entry_macs(key, int(cout), int(cin)))
                lat.append(float(grid.latency_s[i, j]))
    x = np.asarray(macs, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    a = np.stack([np.ones_like(x), x], axis=1)
    (overhead, slope), *_ = np.linalg.lstsq(a, y, rcond=None)
    if slope <= 0:  # degenerate table (one point, or noise): a pure rate
        overhead, slope = 0.0, float(y.sum() / max(x.sum(), 1.0))
    fit = (max(float(overhead), 0.0), 1.0 / float(slope))
    _FITS[id(table)] = (table, fit)
    return fit


class CpuModel(HardwareModel):
    """Measured CPU latency of the kept channel counts: table look-up, fitted fallback."""

    family = "cpu"

    def __init__(self, params: CpuParams | None = None, *, name: str = "") -> None:
        super().__init__(params or CpuParams(), name=name)

    def structure(self) -> dict[str, int]:
        """Channel multiple of the measured grid, for channel-pruning schemes."""
        multiple = self.params.channel_multiple
        if not multiple:
            table = self.table
            multiple = (table.channel_step if table is not None else 0) or 8
        return {"channel_multiple": multiple}

    @property
    def table(self) -> LatencyTable | None:
        """The measured table (read again only when the file changes), or None."""
        path = self.params.latency_table
        if not path:
            return None
        mtime = os.stat(path).st_mtime_ns
        cached = getattr(self, "_table", None)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_latency_table(path))
            self._table = cached
        return cached[1]

    def layer_latency(self, layer: LayerSpec, cout: int, cin: int) -> tuple[float, bool]:
        """(seconds, measured?) of ``layer`` with ``cout``/``cin`` channels per group."""
        if cout == 0 or cin == 0:
            return 0.0, False
        g = layer.groups
        table = self.table
        if table is not None:
            measured = table.lookup(layer, cout * g, cin * g, step=self.params.table_step)
            if measured is not None:
                return measured, True
            overhead, rate = fit_fallback(table)
        else:
            overhead, rate = self.params.overhead_s_fallback, self.params.macs_per_s_fallback
        macs = layer.output_pixels * g * cout * cin * layer.kernel[0] * layer.kernel[1]
        return overhead + macs / rate, False

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Measured (or fitted) latency, energy at ``power_w`` and storage of ``layer``."""
        p = self.params
        if p.batch and p.batch != layer.batch:
            layer = dataclasses.replace(layer, batch=p.batch)
        stats = MaskStats(layer, mask)
        cout, cin = int(stats.out_kept.max()), int(stats.in_kept.max())
        latency, _ = self.layer_latency(layer, cout, cin)
        st = storage(p.index_format, stats)
        return Cost(
            cycles=latency * p.clock_hz,
            latency_s=latency,
            energy_j=p.power_w * latency,
            area_mm2=0.0,
            resources=float(layer.groups * cout) if latency else 0.0,
            memory_bytes=st.nbytes(8 * p.bytes_per_element),
        )


HARDWARE.register(
    "cpu",
    lambda: CpuModel(name="cpu"),
    help="This machine's CPU: measured per-layer latency table (hwprune profile-cpu), "
    "interpolated over channel counts",
)
