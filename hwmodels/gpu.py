"""GPU model: convolution as implicit GEMM, with the staircase and cliffs of real kernels.

The layer is the GEMM ``M = N*P*Q`` (output pixels), ``N = Cout``, ``K = Cin*R*S`` (one per
group). A dense kernel cannot skip scattered zeros, so from the mask only whole channels
count: all-zero output channels and input channels no kept weight reads are removed
(the layer is physically smaller); unstructured sparsity gives no speedup.

Analytic latency of the remaining GEMM:

- alignment: tensor cores (and vectorised loads) want channel counts that are multiples
  of ``channel_multiple``; otherwise the kernel takes a slower path
  (``misaligned="slow"``, throughput times ``misaligned_efficiency``) or pads the
  channels up (``misaligned="pad"``);
- tile quantisation: for each tile (Mt x Nt) of the menu, work is
  ``ceil(M/Mt) * ceil(N/Nt)`` whole tiles, K padded to ``k_tile``;
- wave quantisation: ``waves = ceil(tiles / (SMs * blocks_per_SM))``, each wave takes
  one tile's time;
- the best tile of the menu is picked per layer (as cuDNN's heuristic would);
- roofline: ``latency = max(compute, bytes / bandwidth) + launch overhead``.

This reproduces the cliffs Radu et al. measured (pruning 64 -> 60 channels makes a
layer slower). With ``latency_table`` set, measured latencies (``hwmodels.latency_table``)
replace the analytic ones for every layer shape the table covers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hwmodels.base import HARDWARE, HardwareModel
from hwmodels.cost import Cost
from hwmodels.formats import check_index_format, storage
from hwmodels.latency_table import STEPS, load_latency_table
from hwmodels.layer import LayerSpec
from hwmodels.maskstats import MaskStats

# (Mt, Nt, thread blocks per SM, fraction of the SM's peak the tile reaches). Bigger
# tiles reuse operands better; smaller ones fill more SMs. *Assumed* menu, in the spirit
# of CUTLASS's default configurations.
Tile = tuple[int, int, int, float]
DEFAULT_TILES: tuple[Tile, ...] = (
    (256, 128, 1, 1.0),
    (128, 128, 1, 0.95),
    (128, 64, 2, 0.9),
    (64, 64, 2, 0.8),
    (64, 32, 4, 0.7),
    (32, 32, 4, 0.55),
)
MISALIGNED: tuple[str, ...] = ("slow", "pad")


@dataclass(frozen=True)
class GpuParams:
    """Parameters of the GPU model (defaults: a Jetson TX2-like embedded GPU).

    Attributes:
        n_sm: streaming multiprocessors.
        clock_hz: SM clock.
        fma_per_sm_cycle: peak multiply-accumulates per SM per cycle at the data type
            (tensor cores where present).
        bytes_per_element: data type width (2 = FP16).
        mem_bw_bytes_s: DRAM bandwidth.
        launch_overhead_s: fixed cost of one kernel launch.
        channel_multiple: alignment the fast path wants on Cin and Cout.
        misaligned: "slow" (slower code path) or "pad" (channels padded up).
        misaligned_efficiency: throughput factor of the slow path (*assumed*).
        k_tile: K is processed in chunks of this many (padded up).
        tiles: tile menu, (Mt, Nt, blocks per SM, efficiency) each.
        static_power_w: power drawn while the layer runs, whatever it does (*assumed*).
        fma_pj: energy per executed multiply-accumulate, padding included (*assumed*).
        dram_pj_per_byte: energy per DRAM byte (*assumed*).
        index_format: how the weights are stored ("channel": the compacted dense layer).
        latency_table: path of a measured latency table (JSON); "" = analytic only.
        table_step: staircase direction between measured counts, "lower" or "upper"
            ("linear" blends them; hwmodels.latency_table).
        batch: images per inference; 0 keeps the batch of the inspected layer (1 for the
            CLI's workloads). Tiny networks at batch 1 are launch-bound on a GPU, so
            channel pruning cannot speed them up; throughput serving uses larger batches.
    """

    n_sm: int = 2
    clock_hz: float = 1.3e9
    fma_per_sm_cycle: float = 256.0
    bytes_per_element: int = 2
    mem_bw_bytes_s: float = 59.7e9
    launch_overhead_s: float = 10e-6
    channel_multiple: int = 8
    misaligned: str = "slow"
    misaligned_efficiency: float = 0.5
    k_tile: int = 8
    tiles: tuple[Tile, ...] = DEFAULT_TILES
    static_power_w: float = 1.5
    fma_pj: float = 5.0
    dram_pj_per_byte: float = 40.0
    index_format: str = "channel"
    latency_table: str = ""
    table_step: str = "lower"
    batch: int = 0

    def __post_init__(self) -> None:
        if self.batch < 0:
            raise ValueError(f"batch must be >= 0, got {self.batch}")
        for name in ("n_sm", "channel_multiple", "k_tile", "bytes_per_element"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.misaligned not in MISALIGNED:
            raise ValueError(
                f"unknown misaligned mode {self.misaligned!r}; valid: {', '.join(MISALIGNED)}"
            )
        if not 0 < self.misaligned_efficiency <= 1:
            raise ValueError("misaligned_efficiency must be in (0, 1]")
        if not self.tiles:
            raise ValueError("the tile menu is empty")
        if self.table_step not in STEPS:
            raise ValueError(f"unknown table_step {self.table_step!r}; valid: {', '.join(STEPS)}")
        check_index_format(self.index_format)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


class GpuModel(HardwareModel):
    """Implicit-GEMM GPU latency from kept channel counts: tiles, waves, roofline."""

    family = "gpu"

    def __init__(self, params: GpuParams | None = None, *, name: str = "") -> None:
        super().__init__(params or GpuParams(), name=name)
        self._tiles = np.asarray([t[:3] for t in self.params.tiles], dtype=np.int64)
        self._tile_eff = np.asarray([t[3] for t in self.params.tiles], dtype=np.float64)

    def structure(self) -> dict[str, int]:
        """Channel multiple of the fast path, for channel-pruning schemes."""
        return {"channel_multiple": self.params.channel_multiple}

    def kept_channels(self, layer: LayerSpec, mask: np.ndarray | None) -> tuple[int, int]:
        """(output, input) channels per group that survive: whole zero channels go."""
        return self._kept(MaskStats(layer, mask))

    @staticmethod
    def _kept(stats: MaskStats) -> tuple[int, int]:
        # A grouped kernel runs every group with one shape: the widest group sets it.
        return int(stats.out_kept.max()), int(stats.in_kept.max())

    def compute_s(self, layer: LayerSpec, cout: int, cin: int) -> tuple[float, float, int]:
        """(seconds, FMAs executed including padding, SMs busy) of the best tile."""
        p = self.params
        if cout == 0 or cin == 0:
            return 0.0, 0.0, 0
        efficiency = 1.0
        aligned = cout % p.channel_multiple == 0 and cin % p.channel_multiple == 0
        if not aligned:
            if p.misaligned == "pad":
                cout, cin = _round_up(cout, p.channel_multiple), _round_up(cin, p.channel_multiple)
            else:
                efficiency = p.misaligned_efficiency
        m = layer.output_pixels
        k = _round_up(cin * layer.kernel[0] * layer.kernel[1], p.k_tile)
        mt, nt, bps = self._tiles[:, 0], self._tiles[:, 1], self._tiles[:, 2]
        tiles = layer.groups * (-(-m // mt)) * (-(-cout // nt))
        waves = -(-tiles // (p.n_sm * bps))
        tile_cycles = mt * nt * k * bps / (p.fma_per_sm_cycle * self._tile_eff * efficiency)
        seconds = waves * tile_cycles / p.clock_hz
        best = int(np.argmin(seconds))
        executed = float(tiles[best] * mt[best] * nt[best] * k)
        return float(seconds[best]), executed, int(min(tiles[best], p.n_sm))

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Latency (measured table or analytic roofline), energy and storage of ``layer``."""
        p = self.params
        if p.batch and p.batch != layer.batch:
            layer = dataclasses.replace(layer, batch=p.batch)
        stats = MaskStats(layer, mask)
        cout, cin = self._kept(stats)
        g = layer.groups
        compute, executed, sms = self.compute_s(layer, cout, cin)
        elements = (
            layer.batch * cin * g * layer.in_hw[0] * layer.in_hw[1]
            + g * cout * cin * layer.kernel[0] * layer.kernel[1]
            + layer.output_pixels * cout * g
        )
        dram_bytes = elements * p.bytes_per_element if cout and cin else 0
        busy = max(compute, dram_bytes / p.mem_bw_bytes_s)
        latency = busy + p.launch_overhead_s if busy > 0 else 0.0
        if p.latency_table and cout and cin:
            measured = load_latency_table(p.latency_table).lookup(
                layer, cout * g, cin * g, step=p.table_step
            )
            latency = latency if measured is None else measured
        st = storage(p.index_format, stats)
        energy = (
            p.static_power_w * latency
            + (executed * p.fma_pj + dram_bytes * p.dram_pj_per_byte) * 1e-12
        )
        return Cost(
            cycles=compute * p.clock_hz,
            latency_s=latency,
            energy_j=energy,
            area_mm2=0.0,
            resources=float(sms),
            memory_bytes=st.nbytes(8 * p.bytes_per_element),
        )


# Jetson TX2: 2 Pascal SMs x 128 cores, FP16 at 2x (half2), 1.3 GHz, LPDDR4 59.7 GB/s; no
# tensor cores, so the menu stops at 128x128.
JETSON_TX2 = GpuParams(tiles=DEFAULT_TILES[1:])
# H100 SXM: 132 SMs, dense FP16 tensor cores 989 TFLOPS at ~1.83 GHz = 2048 FMA/SM/cycle,
# HBM3 3.35 TB/s; K in tensor-core chunks of 32.
H100 = GpuParams(
    n_sm=132,
    clock_hz=1.83e9,
    fma_per_sm_cycle=2048.0,
    mem_bw_bytes_s=3.35e12,
    launch_overhead_s=4e-6,
    misaligned_efficiency=0.25,
    k_tile=32,
    static_power_w=100.0,
    fma_pj=0.5,
    dram_pj_per_byte=15.0,
)

HARDWARE.register(
    "gpu-jetson-tx2",
    lambda: GpuModel(JETSON_TX2, name="gpu-jetson-tx2"),
    help="Embedded GPU (Jetson TX2-like): implicit GEMM, tiles, waves, alignment cliffs",
)
HARDWARE.register(
    "gpu-h100",
    lambda: GpuModel(H100, name="gpu-h100"),
    help="Datacenter GPU (H100-like): tensor-core implicit GEMM, tiles, waves, roofline",
)
