"""Storage of a masked layer under each index format: values stored and metadata bits.

Every model charges these bits in its memory footprint, and the digital models also in
their traffic and energy, so a format with heavy metadata (coordinates) loses part of
what its sparsity saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwmodels.base import INDEX_FORMATS
from hwmodels.maskstats import MaskStats


def check_index_format(fmt: str) -> str:
    """Return ``fmt`` if it is a known index format, else ``ValueError`` naming the choices."""
    if fmt not in INDEX_FORMATS:
        raise ValueError(f"unknown index format {fmt!r}; valid: {', '.join(INDEX_FORMATS)}")
    return fmt


def index_bits(n: int) -> int:
    """Bits of an index that distinguishes ``n`` values (at least 1)."""
    return max(1, math.ceil(math.log2(max(n, 2))))


@dataclass(frozen=True)
class Storage:
    """How a layer's weights are stored.

    Attributes:
        values: weight values stored (zeros included where the format stores them).
        metadata_bits: index bits of the format for the whole layer.
    """

    values: int
    metadata_bits: int

    def nbytes(self, value_bits: int) -> float:
        """Bytes of values plus metadata."""
        return (self.values * value_bits + self.metadata_bits) / 8.0


def storage(
    fmt: str,
    stats: MaskStats,
    *,
    group_size: int = 16,
    pattern_count: int = 8,
    tile_rows: int = 128,
    tile_cols: int = 128,
) -> Storage:
    """Values and metadata bits of ``stats.layer`` under its mask, stored in format ``fmt``.

    Args:
        fmt: one of ``hwmodels.INDEX_FORMATS``.
        stats: the layer's mask statistics (``MaskStats``; its mask None means dense).
        group_size: m of the n-of-m format (the activation block of the hardware).
        pattern_count: size of the per-layer pattern dictionary (pattern-id format).
        tile_rows: entries of K per tile of the crossbar-table format.
        tile_cols: output channels per tile of the crossbar-table format.
    """
    check_index_format(fmt)
    layer, nnz = stats.layer, stats.nnz
    if stats.dense:
        # Nothing to index: a fully dense layer is stored dense whatever the format, so a
        # dense mask costs exactly what ``None`` costs.
        fmt = "dense"
    k = layer.fan_in
    cout = layer.out_channels
    if fmt == "dense":
        return Storage(layer.params, 0)
    if fmt == "bitmask":
        return Storage(nnz, layer.params)
    if fmt == "coordinates":
        # CSR over the unrolled matrix: a column index per non-zero plus a count per row.
        return Storage(nnz, nnz * index_bits(k) + cout * index_bits(k + 1))
    if fmt == "n-of-m":
        return Storage(nnz, nnz * index_bits(group_size))
    if fmt == "pattern-id":
        # One pattern id per kernel; a pointwise layer's "kernel" is a single weight.
        kernels = cout * (layer.in_channels // layer.groups)
        return Storage(nnz, kernels * index_bits(pattern_count))
    if fmt == "channel":
        kept_out = int(stats.out_kept.sum())
        kept_in = int(stats.in_kept.max(initial=0))
        kk = layer.kernel[0] * layer.kernel[1]
        meta = kept_out * index_bits(cout) + kept_in * index_bits(layer.in_channels)
        return Storage(kept_out * kept_in * kk, meta)
    # crossbar-table: one entry (row block, column block) per non-empty tile, plus a
    # column index per used column so that recombined outputs find their channel.
    n_rb, n_cb = -(-k // tile_rows), -(-cout // tile_cols)
    used_cols = stats.segments(tile_rows)  # (cout, row block): column used in that tile
    cols = int(np.count_nonzero(used_cols))
    pad = n_cb * tile_cols - cout
    if pad:
        used_cols = np.concatenate([used_cols, np.zeros((pad, n_rb), dtype=bool)])
    tiles = int(np.count_nonzero(used_cols.reshape(n_cb, tile_cols, n_rb).any(axis=1)))
    meta = tiles * (index_bits(n_rb) + index_bits(n_cb)) + cols * index_bits(tile_cols)
    return Storage(nnz, meta)
