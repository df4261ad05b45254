"""Fast statistics of bool weight masks, shared by the cost models.

A ResNet-50 has about 25 M weights; scoring a full set of masks must take milliseconds,
so the hot reductions work on the mask's bytes viewed as 64-bit words (8 weights per
word) instead of on one bool at a time.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from hwmodels.layer import LayerSpec, unroll

# Multiplying a word whose bytes are each 0 or 1 by this constant sums the bytes into
# the top byte (no carry can occur: the sum is at most 8).
_BYTE_SUM = np.uint64(0x0101010101010101)
_SHIFT = np.uint64(56)
_SMALL_WORDS: dict[int, tuple[type, np.unsignedinteger, np.unsignedinteger]] = {
    2: (np.uint16, np.uint16(0x0101), np.uint16(8)),
    4: (np.uint32, np.uint32(0x01010101), np.uint32(24)),
}


def as_unrolled(mask: np.ndarray | None, layer: LayerSpec) -> np.ndarray | None:
    """The mask as a C-contiguous bool ``(out_channels, K)`` matrix; None stays None."""
    if mask is None:
        return None
    um = unroll(mask, layer)
    if um.dtype != np.bool_:
        um = um.astype(bool)
    return np.ascontiguousarray(um)


def _byte_sums(words: np.ndarray) -> np.ndarray:
    """Per 64-bit word, the number of its bytes equal to 1 (bytes must be 0 or 1)."""
    words = words * _BYTE_SUM
    words >>= _SHIFT
    return words


def block_nnz(um: np.ndarray, g: int) -> np.ndarray:
    """Non-zeros per row and per block of ``g`` consecutive columns: ``(rows, ceil(K/g))``.

    The last block may be shorter than ``g`` (it is zero-padded, which adds nothing).
    """
    if g < 1:
        raise ValueError(f"block size must be >= 1, got {g}")
    rows, k = um.shape
    nb = -(-k // g)
    if nb * g != k:
        padded = np.zeros((rows, nb * g), dtype=bool)
        padded[:, :k] = um
        um = padded
    if g % 8 == 0 and g < 256:
        # Add the g/8 words of each block bytewise (no byte exceeds g/8, the total stays
        # under 256 so nothing carries), then sum the bytes of the result.
        words = np.ascontiguousarray(um).view(np.uint64).reshape(rows * nb, g // 8)
        acc = words[:, 0].copy()
        for i in range(1, g // 8):
            acc += words[:, i]
        return _byte_sums(acc).view(np.int64).reshape(rows, nb)
    if g in _SMALL_WORDS:
        # A block is one 2- or 4-byte word: sum its bytes the same way.
        dtype, ones, shift = _SMALL_WORDS[g]
        words = np.ascontiguousarray(um).view(dtype).ravel() * ones
        words >>= shift
        return words.astype(np.int64).reshape(rows, nb)
    return um.reshape(rows, nb, g).sum(axis=2, dtype=np.int64)


def row_any(um: np.ndarray) -> np.ndarray:
    """Bool per row: does the row hold any non-zero."""
    # numpy's bool reduction along contiguous rows beats a 64-bit word view's ``any``.
    return um.any(axis=1)


def col_any(um: np.ndarray) -> np.ndarray:
    """Bool per column: does the column hold any non-zero."""
    rows, k = um.shape
    if k % 8 == 0 and um.flags.c_contiguous:
        # OR the rows together 8 columns at a time, then look at the bytes again.
        words = um.view(np.uint8).view(np.uint64).reshape(rows, k // 8)
        return np.bitwise_or.reduce(words, axis=0).view(np.uint8).astype(bool)
    return um.any(axis=0)


def input_channels_kept(um: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """Bool per (group-local) input channel: does any kept weight read it."""
    kk = layer.kernel[0] * layer.kernel[1]
    return col_any(um).reshape(layer.in_channels // layer.groups, kk).any(axis=1)


def grouped_col_any(um: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """``(groups, K)``: per group, which unrolled columns any of its output channels keep."""
    g = layer.groups
    if g == 1:
        return col_any(um)[None, :]
    return um.reshape(g, layer.out_channels // g, layer.fan_in).any(axis=1)


_WORDS: tuple[tuple[int, type], ...] = ((8, np.uint64), (4, np.uint32), (2, np.uint16))


def segment_any(um: np.ndarray, size: int) -> np.ndarray:
    """``(rows, ceil(K/size))``: does each row hold a non-zero in each segment of ``size``."""
    rows, k = um.shape
    for width, dtype in _WORDS:
        # OR the segment's bytes together ``width`` at a time (whole segments), then the
        # ragged last segment on its own.
        if size % width == 0 and k % width == 0 and um.flags.c_contiguous and k >= size:
            full = k // size
            words = um.view(dtype).reshape(rows, k // width)
            out = np.bitwise_or.reduce(
                words[:, : full * size // width].reshape(rows, full, size // width), axis=2
            ).astype(bool)
            if full * size < k:
                out = np.concatenate([out, um[:, full * size :].any(axis=1)[:, None]], axis=1)
            return out
    return np.logical_or.reduceat(um, np.arange(0, k, size), axis=1)


class MaskStats:
    """Reductions of one layer's mask, each computed at most once per cost call.

    Several parts of a model (cycles, storage) need the same reductions (non-zeros, kept
    rows and columns); caching them here keeps a network's cost to one pass per reduction.
    ``um`` None means dense.
    """

    def __init__(self, layer: LayerSpec, mask: np.ndarray | None) -> None:
        self.layer = layer
        self.um = as_unrolled(mask, layer)
        self._segments: dict[int, np.ndarray] = {}

    @cached_property
    def nnz(self) -> int:
        """Kept weights."""
        return self.layer.params if self.um is None else int(np.count_nonzero(self.um))

    @cached_property
    def dense(self) -> bool:
        """True when every weight is kept."""
        return self.nnz == self.layer.params

    @cached_property
    def out_kept(self) -> np.ndarray:
        """``(groups,)`` kept output channels per group."""
        layer, g = self.layer, self.layer.groups
        if self.um is None:
            return np.full(g, layer.out_channels // g)
        return row_any(self.um).reshape(g, -1).sum(axis=1)

    @cached_property
    def grouped_cols(self) -> np.ndarray:
        """``(groups, K)``: unrolled columns each group still reads (um must not be None)."""
        return grouped_col_any(self.um, self.layer)

    @cached_property
    def k_kept(self) -> np.ndarray:
        """``(groups,)`` unrolled columns (entries of K) per group some kept weight uses."""
        if self.um is None:
            return np.full(self.layer.groups, self.layer.fan_in)
        return self.grouped_cols.sum(axis=1)

    @cached_property
    def in_kept(self) -> np.ndarray:
        """``(groups,)`` input channels per group that some kept weight reads."""
        layer, g = self.layer, self.layer.groups
        cin_g = layer.in_channels // g
        if self.um is None:
            return np.full(g, cin_g)
        k2 = layer.kernel[0] * layer.kernel[1]
        return self.grouped_cols.reshape(g, cin_g, k2).any(axis=2).sum(axis=1)

    def segments(self, size: int) -> np.ndarray:
        """``segment_any(um, size)``, cached per size (um must not be None)."""
        if size not in self._segments:
            self._segments[size] = segment_any(self.um, size)
        return self._segments[size]
