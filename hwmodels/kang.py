"""Sparse PE-array accelerator of Kang's accelerator-aware pruning (Cambricon-X style).

A row of ``n_pe`` PEs computes different output channels; every PE is fed the same block
of ``g`` consecutive input activations (``g`` consecutive entries of the unrolled K
axis) in lock-step and multiplies only its non-zero weights of that block on
``multipliers_per_pe`` multipliers. The array moves to the next block when the slowest
PE is done, so per output position

    cycles = sum over activation blocks b of max over PEs of ceil(nnz(PE, b) / M)

(Kang, TCSVT 2020, section 1.1 of methods.md), computed here from the real mask. Output
channels beyond ``n_pe`` take further passes; a grouped or depthwise layer runs group
by group, since a group's output channels read only that group's inputs.
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

SparsityMode = Literal["skip", "gate"]
SPARSITY_MODES: tuple[str, ...] = ("skip", "gate")


@dataclass(frozen=True)
class KangParams:
    """Parameters of the sparse PE array.

    Attributes:
        group_size: g, activations per broadcast block (the scheme's group size).
        n_pe: PEs working in lock-step on different output channels.
        multipliers_per_pe: M, multipliers per PE (non-zeros of a block it handles per
            cycle). The default g/4 makes a 25%-dense balanced layer run at 100%
            utilisation, the density of Kang's released conv models.
        sparsity: "skip" (zeros take no cycle and no energy) or "gate" (zeros take their
            cycle but no MAC or read energy: Sparseloop's gating).
        index_format: how non-zeros are located (``hwmodels.INDEX_FORMATS``); "dense"
            stores zeros and cannot skip them (the array only gates them).
        pattern_count: pattern dictionary size charged by the "pattern-id" format.
        weight_bits: bits per stored weight value.
        act_bits: bits per activation and partial sum.
        clock_hz: clock frequency.
        dram_bytes_per_cycle: off-chip bandwidth.
        glb_bytes_per_cycle: global-buffer bandwidth (activations in, outputs out); the
            per-PE weight buffers are sized to feed their multipliers and never stall.
        energy_table: "horowitz45" (45 nm pJ) or "eyeriss" (relative, times
            ``energy_unit_pj``).
        energy_unit_pj: pJ of one unit of a relative table.
    """

    group_size: int = 16
    n_pe: int = 32
    multipliers_per_pe: int = 4
    sparsity: SparsityMode = "skip"
    index_format: str = "n-of-m"
    pattern_count: int = 8
    weight_bits: int = 16
    act_bits: int = 16
    clock_hz: float = 500e6
    dram_bytes_per_cycle: float = 16.0
    glb_bytes_per_cycle: float = 64.0
    energy_table: str = "horowitz45"
    energy_unit_pj: float = 1.0

    def __post_init__(self) -> None:
        for name in ("group_size", "n_pe", "multipliers_per_pe", "weight_bits", "act_bits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sparsity not in SPARSITY_MODES:
            raise ValueError(
                f"unknown sparsity mode {self.sparsity!r}; valid: {', '.join(SPARSITY_MODES)}"
            )
        check_index_format(self.index_format)
        energy_table(self.energy_table)


def _block_lengths(k: int, g: int) -> np.ndarray:
    """Length of each activation block of a K-long row (the last may be shorter)."""
    lengths = np.full(-(-k // g), g, dtype=np.int64)
    lengths[-1] = k - g * (len(lengths) - 1)
    return lengths


class KangAccelerator(HardwareModel):
    """Lock-step sparse PE array; cycles from the per-PE, per-block non-zeros of the mask."""

    family = "accel-kang"

    def __init__(self, params: KangParams | None = None, *, name: str = "") -> None:
        super().__init__(params or KangParams(), name=name)

    def structure(self) -> dict[str, int]:
        """Activation block size and pattern dictionary size for the schemes."""
        return {"group_size": self.params.group_size, "pattern_count": self.params.pattern_count}

    def _passes(self, layer: LayerSpec) -> int:
        return -(-(layer.out_channels // layer.groups) // self.params.n_pe)

    def dense_cycles_per_position(self, layer: LayerSpec) -> int:
        """Cycles of one output position with every weight kept."""
        p = self.params
        per_block = -(-_block_lengths(layer.fan_in, p.group_size) // p.multipliers_per_pe)
        return int(per_block.sum()) * self._passes(layer) * layer.groups

    def sparse_cycles_per_position(self, layer: LayerSpec, um: np.ndarray) -> tuple[int, int]:
        """(cycles, activation blocks not all-zero) of one output position under ``um``."""
        p = self.params
        counts = block_nnz(um, p.group_size)  # (Cout, nb)
        steps = (counts + (p.multipliers_per_pe - 1)) // p.multipliers_per_pe
        g, cout_g = layer.groups, layer.out_channels // layer.groups
        passes = self._passes(layer)
        pad = passes * p.n_pe - cout_g
        steps = steps.reshape(g, cout_g, -1)
        if pad:
            # Idle PEs of the last pass take no cycle.
            steps = np.concatenate([steps, np.zeros((g, pad, steps.shape[2]), steps.dtype)], 1)
        slowest = steps.reshape(g, passes, p.n_pe, -1).max(axis=2)
        return int(slowest.sum()), int(np.count_nonzero(slowest))

    def cost(self, layer: LayerSpec, mask: np.ndarray | None = None) -> Cost:
        """Cycles, latency, energy and weight storage of ``layer`` under ``mask``."""
        p = self.params
        stats = MaskStats(layer, mask)
        um, nnz = stats.um, stats.nnz
        positions = layer.output_pixels
        passes = self._passes(layer)
        n_blocks = -(-layer.fan_in // p.group_size) * passes * layer.groups
        dense_cycles = self.dense_cycles_per_position(layer)
        can_skip = p.sparsity == "skip" and p.index_format != "dense" and um is not None
        if can_skip:
            cycles_pp, blocks_pp = self.sparse_cycles_per_position(layer, um)
        else:
            cycles_pp, blocks_pp = dense_cycles, n_blocks
        cycles = float(cycles_pp * positions)

        st = storage(p.index_format, stats, group_size=p.group_size, pattern_count=p.pattern_count)
        weight_bytes = st.nbytes(p.weight_bits)
        in_bytes = (
            layer.batch * layer.in_channels * layer.in_hw[0] * layer.in_hw[1] * p.act_bits / 8
        )
        out_bytes = positions * layer.out_channels * p.act_bits / 8
        dram_bytes = weight_bytes + in_bytes + out_bytes
        # Each activation block is read from the global buffer once per pass and
        # broadcast to every PE; blocks no PE needs are skipped.
        act_reads = positions * blocks_pp * p.group_size
        glb_bytes = act_reads * p.act_bits / 8 + out_bytes
        latency_cycles = max(
            cycles, dram_bytes / p.dram_bytes_per_cycle, glb_bytes / p.glb_bytes_per_cycle
        )

        table = energy_table(p.energy_table, p.energy_unit_pj)
        macs = positions * nnz  # gated or skipped zeros spend no MAC energy
        # Each PE reads its kept weights and their index bits once per output position.
        weight_reads_bits = positions * (nnz * p.weight_bits + st.metadata_bits)
        energy_pj = (
            macs * (table.mac + 2 * table.rf * p.act_bits / table.word_bits)
            + table.memory_pj("sram", weight_reads_bits)
            + table.memory_pj("sram", glb_bytes * 8)
            + table.memory_pj("noc", act_reads * p.act_bits)
            + table.memory_pj("dram", dram_bytes * 8)
        )
        busy_pe = min(p.n_pe, layer.out_channels // layer.groups)
        return Cost(
            cycles=cycles,
            latency_s=latency_cycles / p.clock_hz,
            energy_j=energy_pj * 1e-12,
            area_mm2=0.0,
            resources=float(busy_pe),
            memory_bytes=weight_bytes,
        )


def _preset(g: int) -> KangAccelerator:
    return KangAccelerator(
        KangParams(group_size=g, multipliers_per_pe=g // 4), name=f"accel-kang-{g}"
    )


HARDWARE.register(
    "accel-kang-8",
    lambda: _preset(8),
    help="Kang sparse PE array: 32 PEs, activation block g=8, 2 multipliers per PE",
)
HARDWARE.register(
    "accel-kang-16",
    lambda: _preset(16),
    help="Kang sparse PE array: 32 PEs, activation block g=16, 4 multipliers per PE",
)
