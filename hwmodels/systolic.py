"""Systolic-array accelerator (TPU style), timed with SCALE-Sim's analytical model.

The layer is the GEMM ``M x K x N`` (M = output pixels, K = fan-in, N = output channels;
a grouped layer is one GEMM per group, run one after the other). An ``rows x cols``
array folds it:

- weight stationary ("ws", default): K over rows, N over columns; each fold loads its
  weights (R cycles), streams the M input rows through and drains: ``2 R + C + M - 2``
  cycles per fold;
- output stationary ("os"): M over rows, N over columns, K streamed: ``R + C + K - 2``
  per fold.

A fold takes the whole array's fill and drain even when the GEMM uses only part of it
(SCALE-Sim pads partial folds with idle rows and columns), and SCALE-Sim counts a
layer's cycles from 0 (one fewer than the sum of its folds). These are SCALE-Sim v3's
compute cycles exactly (``bench/validate_scalesim.py`` checks them layer by layer).

A dense array multiplies zeros like any other weight, so only structure that removes
whole rows of work saves cycles: an all-zero output channel (a column of the GEMM) or an
all-zero row of K (an input the layer no longer reads) is dropped before folding. An
optional ``n:m`` mode models sparse tensor cores (SCALE-Sim's sparse mode): a mask with
at most n non-zeros in every m consecutive weights of K streams a K compressed to
``n * (K // m) + min(K % m, n)`` rows; any other mask runs dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwmodels.base import HARDWARE, HardwareModel
from hwmodels.cost import Cost
from hwmodels.energy import energy_table
from hwmodels.formats import check_index_format, storage
from hwmodels.layer import LayerSpec
from hwmodels.maskstats import MaskStats, block_nnz

Dataflow = Literal["ws", "os"]
DATAFLOWS: tuple[str, ...] = ("ws", "os")


def parse_nm(text: str) -> tuple[int, int] | None:
    """``"2:4"`` -> (2, 4); ``"off"`` or ``""`` -> None; ``ValueError`` otherwise."""
    if text in ("", "off"):
        return None
    try:
        n, m = (int(x) for x in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"n:m sparsity must look like '2:4' or 'off', got {text!r}") from exc
    if not 1 <= n < m:
        raise ValueError(f"n:m sparsity needs 1 <= n < m, got {text!r}")
    return n, m


@dataclass(frozen=True)
class SystolicParams:
    """Parameters of the systolic array.

    Attributes:
        rows: PE rows (R).
        cols: PE columns (C).
        dataflow: "ws" (weight stationary) or "os" (output stationary).
        nm_sparsity: "off" or "n:m" (e.g. "2:4"): structured-sparse mode of sparse
            tensor cores; masks that satisfy it stream K compressed by n/m.
        index_format: storage format of the weights (``hwmodels.INDEX_FORMATS``).
        weight_bits: bits per weight.
        act_bits: bits per activation.
        clock_hz: clock frequency.
        dram_bytes_per_cycle: off-chip bandwidth.
        sram_bytes_per_cycle: on-chip buffer bandwidth.
        energy_table: "horowitz45" or "eyeriss" (times ``energy_unit_pj``).
        energy_unit_pj: pJ of one unit of a relative table.
    """

    rows: int = 32
    cols: int = 32
    dataflow: Dataflow = "ws"
    nm_sparsity: str = "off"
    index_format: str = "dense"
    weight_bits: int = 8
    act_bits: int = 8
    clock_hz: float = 1e9
    dram_bytes_per_cycle: float = 32.0
    sram_bytes_per_cycle: float = 128.0
    energy_table: str = "horowitz45"
    energy_unit_pj: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "weight_bits", "act_bits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"unknown dataflow {self.dataflow!r}; valid: {', '.join(DATAFLOWS)}")
        parse_nm(self.nm_sparsity)
        check_index_format(self.index_format)
        energy_table(self.energy_table)


def fold_cycles(
    stationary: np.ndarray,
    across: np.ndarray,
    streamed: np.ndarray,
    rows: int,
    cols: int,
    *,
    load: int | None = None,
) -> np.ndarray:
    """SCALE-Sim cycles of GEMMs folded on a ``rows x cols`` array (vectorised).

    ``stationary`` is the extent mapped on rows (K for ws, M for os), ``across`` the one
    mapped on columns (N) and ``streamed`` the one streamed through (M for ws, K for os).
    Every fold costs ``load + rows + cols + streamed - 2`` whatever part of the array it
    uses (``load``: cycles to preload the stationary operand, ``rows`` for weight
    stationary, the default, 0 for output stationary); a GEMM's count starts at 0, so it
    is one less than the sum of its folds. Empty GEMMs cost 0.
    """
    load = rows if load is None else load
    stationary, across, streamed = (
        np.asarray(a, dtype=np.int64) for a in (stationary, across, streamed)
    )
    folds = (-(-stationary // rows)) * (-(-across // cols))
    total = folds * (load + rows + cols - 2 + streamed) - 1
    return np.where((stationary > 0) & (across > 0) & (streamed > 0), total, 0)


class SystolicArray(HardwareModel):
    """Dense systolic array: whole folds, rows and columns of the GEMM are what it saves."""

    family = "systolic"

    def __init__(self, params: SystolicParams | None = None, *, name: str = "") -> None:
        super().__init__(params or SystolicParams(), name=name)

    def structure(self) -> dict[str, int]:
        """Channel multiple = array columns (a whole fold of N); n:m group when enabled."""
        out = {"channel_multiple": self.params.cols}
        nm = parse_nm(self.params.nm_sparsity)
        if nm is not None:
            out["group_size"] = nm[1]
        return out

    def effective_gemm(self, stats: MaskStats) -> tuple[np.ndarray, np.ndarray]:
        """Per group, (K rows, N columns) left once all-zero rows and columns are dropped.

        In n:m mode a mask satisfying the pattern streams ``n * (K // m) + min(K % m, n)``
        rows of K (or fewer, when whole rows are also empty).
        """
        layer, um = stats.layer, stats.um
        k_kept, n_kept = stats.k_kept, stats.out_kept
        nm = parse_nm(self.params.nm_sparsity)
        if um is not None and nm is not None and int(block_nnz(um, nm[1]).max()) <= nm[0]:
            k = layer.fan_in
            k_kept = np.minimum(k_kept, nm[0] * (k // nm[1]) + min(k % nm[1], nm[0]))
        return k_kept, n_kept

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Cycles (SCALE-Sim folds), latency, energy and storage of ``layer``."""
        p = self.params
        stats = MaskStats(layer, mask)
        k_eff, n_eff = self.effective_gemm(stats)
        m = layer.output_pixels
        m_arr = np.full_like(k_eff, m)
        if p.dataflow == "ws":
            per_group = fold_cycles(k_eff, n_eff, m_arr, p.rows, p.cols)
            k_folds = -(-k_eff // p.rows)
            n_folds = -(-n_eff // p.cols)
            # Inputs are re-streamed for every column fold; partial sums cross K folds.
            act_reads = int((m * k_eff * n_folds).sum())
            psum_words = int((m * n_eff * k_folds).sum())
            weight_refetch = 0
            on_rows = np.minimum(k_eff, p.rows)
        else:
            per_group = fold_cycles(m_arr, n_eff, k_eff, p.rows, p.cols, load=0)
            m_folds = -(-m // p.rows)
            n_folds = -(-n_eff // p.cols)
            # Inputs are re-streamed per column fold and weights per row fold of M.
            act_reads = int((m * k_eff * n_folds).sum())
            psum_words = int((m * n_eff).sum())
            weight_refetch = int((k_eff * n_eff * (m_folds - 1)).sum())
            on_rows = np.minimum(m_arr, p.rows)
        cycles = float(per_group.sum())
        executed = int((k_eff * n_eff).sum())  # weights the array holds (zeros included)
        macs = m * executed

        nm = parse_nm(p.nm_sparsity)
        st = storage(p.index_format, stats, group_size=nm[1] if nm else 16)
        weight_bytes = st.nbytes(p.weight_bits)
        in_bytes = (
            layer.batch * layer.in_channels * layer.in_hw[0] * layer.in_hw[1] * p.act_bits / 8
        )
        out_bytes = m * layer.out_channels * p.act_bits / 8
        dram_bytes = weight_bytes + in_bytes + out_bytes
        weight_sram_words = executed + weight_refetch
        sram_bits = (act_reads + psum_words) * p.act_bits + weight_sram_words * p.weight_bits
        latency_cycles = max(
            cycles, dram_bytes / p.dram_bytes_per_cycle, sram_bits / 8 / p.sram_bytes_per_cycle
        )
        table = energy_table(p.energy_table, p.energy_unit_pj)
        # Every MAC passes its input and partial sum to a neighbour PE.
        energy_pj = (
            macs * table.mac
            + table.memory_pj("noc", macs * 2 * p.act_bits)
            + table.memory_pj("sram", sram_bits)
            + table.memory_pj("dram", dram_bytes * 8)
        )
        # PEs the busiest fold uses (with an all-zero layer, none).
        busy = int(np.max(on_rows * np.minimum(n_eff, p.cols) * (k_eff > 0), initial=0))
        return Cost(
            cycles=cycles,
            latency_s=latency_cycles / p.clock_hz,
            energy_j=energy_pj * 1e-12,
            area_mm2=0.0,
            resources=float(busy),
            memory_bytes=weight_bytes,
        )


def _preset(side: int) -> SystolicArray:
    params = SystolicParams(
        rows=side,
        cols=side,
        dram_bytes_per_cycle=side / 2,
        sram_bytes_per_cycle=4.0 * side,
    )
    return SystolicArray(params, name=f"systolic-{side}")


HARDWARE.register(
    "systolic-32", lambda: _preset(32), help="32x32 weight-stationary systolic array, int8"
)
HARDWARE.register(
    "systolic-128",
    lambda: _preset(128),
    help="128x128 weight-stationary systolic array (TPU-like), int8",
)
