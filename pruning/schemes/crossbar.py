"""Crossbar-aware pruning for ReRAM crossbars (Liang, Deng et al., arXiv 1807.10816)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.schemes._common import (
    LeveledScheme,
    check_positive_int,
    grid_levels,
    magnitude,
    top_masks,
)

GRAINS: tuple[str, ...] = ("crossbar", "column")
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class CrossbarGeometry:
    """How a layer's unrolled ``K x Cout`` matrix tiles onto ``XB x XB`` crossbars.

    ``rows_per_block`` keeps whole ``kh x kw`` kernels in one crossbar (MNSIM 2.0):
    ``(XB // (kh*kw)) * kh*kw`` rows, or ``XB`` when one kernel is taller than a crossbar.
    """

    fan_in: int
    out_channels: int
    kernel_size: int
    crossbar_size: int
    rows_per_block: int

    @classmethod
    def of(cls, layer: LayerSpec, crossbar_size: int) -> CrossbarGeometry:
        """The geometry of ``layer`` on ``crossbar_size``-square crossbars."""
        kk = layer.kernel[0] * layer.kernel[1]
        rows = (crossbar_size // kk) * kk if kk <= crossbar_size else crossbar_size
        return cls(layer.fan_in, layer.out_channels, kk, crossbar_size, rows)

    @property
    def row_blocks(self) -> int:
        """Row-blocks: crossbars stacked along the input (K) dimension."""
        return math.ceil(self.fan_in / self.rows_per_block)

    @property
    def col_blocks(self) -> int:
        """Column-blocks: crossbars side by side along the output (Cout) dimension."""
        return math.ceil(self.out_channels / self.crossbar_size)

    def row_block_of(self) -> np.ndarray:
        """Row-block index of each of the ``K`` rows (in the reordered input order)."""
        return np.arange(self.fan_in) // self.rows_per_block


def permute_inputs(arr: ArrayT, order: np.ndarray | None, inverse: bool) -> ArrayT:
    """Reorder the input channels (dim 1) of a weight-shaped array or tensor, or undo it."""
    if order is None:
        return arr
    if not inverse:
        return arr[:, order]
    out = arr.clone() if isinstance(arr, torch.Tensor) else arr.copy()
    out[:, order] = arr
    return out


class CrossbarScheme(LeveledScheme):
    """Zero whole crossbars, or columns within a crossbar row-block, of the unrolled matrix.

    The layer's weights unroll to the ``K x Cout`` matrix (``K = Cin/groups * kh * kw`` rows
    in ``(cin, kh, kw)`` order: the transpose of ``weight.reshape(Cout, -1)``), tiled into
    ``crossbar_size``-square crossbars whose row-blocks hold whole kernels
    (``CrossbarGeometry``). Two grains:

    - ``grain="crossbar"``: whole ``rows_per_block x XB`` blocks are zeroed, lowest L2 norm
      first; levels ``b / B`` (``B`` = row-blocks x column-blocks) for every ``b`` when
      ``B <= steps``, else for the ``b`` nearest to a grid of ``steps`` steps.
      The level is the fraction of crossbars kept; it equals the weight density when every
      block is full, and edge blocks make the two differ slightly otherwise.
    - ``grain="column"``: every row-block keeps its ``c`` highest-norm columns (a column is
      one output channel's slice of the row-block) and zeroes the others; output
      recombination then packs the survivors of a row-block into ``ceil(c / XB)`` crossbars.
      Levels ``c / Cout`` for ``c`` on a grid of ``steps`` steps plus every multiple of XB
      (where a crossbar is saved); the level is exactly the weight density.

    ``reorder=True`` first sorts the input channels by descending L2 norm (ties by index)
    so that weak channels share row-blocks and prune together (Liang's input reorder). The
    returned mask is in the original channel order, so the network computes the same
    function; ``input_order`` gives the permutation the crossbar table records.

    Masks are nested as the density falls. Linear layers and 1x1 convs map with
    ``rows_per_block = XB``; depthwise and grouped convs use their own ``K x Cout`` matrix
    (``K = kh*kw*Cin/groups``). Index format: the crossbar mapping table.
    """

    name = "crossbar"
    index_format = "crossbar-table"
    codec = "crossbar-table"
    structure_params: tuple[str, ...] = ("crossbar_size",)

    def __init__(
        self,
        crossbar_size: int = 128,
        grain: str = "crossbar",
        reorder: bool = False,
        steps: int = 32,
    ) -> None:
        super().__init__()
        if grain not in GRAINS:
            raise ValueError(f"unknown crossbar grain {grain!r}; valid: {', '.join(GRAINS)}")
        self.crossbar_size = check_positive_int("crossbar_size", crossbar_size)
        self.grain = grain
        self.reorder = bool(reorder)
        self.steps = check_positive_int("steps", steps)

    def geometry(self, layer: LayerSpec) -> CrossbarGeometry:
        """How ``layer`` tiles onto this scheme's crossbars."""
        return CrossbarGeometry.of(layer, self.crossbar_size)

    def input_order(self, weight: torch.Tensor, layer: LayerSpec) -> np.ndarray | None:
        """Input-channel permutation applied before tiling (None without ``reorder``).

        Position ``i`` of the reordered layer is original input channel ``order[i]``.
        """
        if not self.reorder:
            return None
        absw = magnitude(weight).astype(np.float64)
        energy = (absw * absw).reshape(weight.shape[0], weight.shape[1], -1).sum((0, 2))
        return np.argsort(-energy, kind="stable")

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        geo = self.geometry(layer)
        if self.grain == "crossbar":
            blocks = geo.row_blocks * geo.col_blocks
            counts, floors = grid_levels(blocks, self.steps)
            return counts / blocks, [int(b) for b in counts], floors
        cout = layer.out_channels
        grid, grid_floors = grid_levels(cout, self.steps)
        floor_of = {int(c): float(f) for c, f in zip(grid, grid_floors, strict=True)}
        aligned = np.arange(self.crossbar_size, cout, self.crossbar_size)
        counts = np.union1d(grid, aligned).astype(int)
        floors = np.array([floor_of.get(int(c), c / cout) for c in counts])
        # An aligned count between a grid count and its nominal point keeps the order.
        floors = np.minimum.accumulate(floors[::-1])[::-1]
        return counts / cout, [int(c) for c in counts], floors

    def column_energy(self, weight: torch.Tensor, layer: LayerSpec) -> np.ndarray:
        """Squared L2 norm of each (output channel, row-block) column: ``(Cout, row_blocks)``.

        Computed in the reordered input order when ``reorder`` is on.
        """
        geo = self.geometry(layer)
        absw = magnitude(weight)
        sq = permute_inputs(absw * absw, self.input_order(weight, layer), False)
        sq = sq.reshape(layer.out_channels, geo.fan_in)
        padded = np.pad(sq, ((0, 0), (0, geo.row_blocks * geo.rows_per_block - geo.fan_in)))
        return padded.reshape(layer.out_channels, geo.row_blocks, geo.rows_per_block).sum(-1)

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        geo = self.geometry(layer)
        columns = self.column_energy(weight, layer)  # (Cout, row_blocks)
        if self.grain == "crossbar":
            pad = geo.col_blocks * geo.crossbar_size - geo.out_channels
            padded = np.pad(columns, ((0, pad), (0, 0)))
            blocks = padded.reshape(geo.col_blocks, geo.crossbar_size, geo.row_blocks).sum(1)
            keeps = top_masks(blocks.reshape(1, -1), [int(b) for b in keys])
            # Block (cb, rb) -> every output channel of column-block cb.
            col_keep = [
                np.repeat(k.reshape(geo.col_blocks, geo.row_blocks), geo.crossbar_size, axis=0)
                for k in keeps
            ]
            col_keep = [k[: geo.out_channels] for k in col_keep]
        else:
            # Rank the columns within each row-block.
            col_keep = [k.T for k in top_masks(columns.T.copy(), [int(c) for c in keys])]
        # Row-block of every weight of a row in the original input order, so that each level
        # is one gather (the reorder never has to be undone on a full mask).
        blocks_of = geo.row_block_of()
        order = self.input_order(weight, layer)
        if order is not None:
            blocks_of = permute_inputs(blocks_of.reshape(1, weight.shape[1], -1), order, True)
            blocks_of = blocks_of.reshape(-1)
        return [keep[:, blocks_of].reshape(weight.shape) for keep in col_keep]


SCHEMES.register("crossbar", CrossbarScheme)
