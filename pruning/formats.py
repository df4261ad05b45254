"""Sparse hardware index formats: each scheme's masked weights as the hardware stores them.

``encode(scheme, weight, mask, layer) -> EncodedLayer``; ``decode()`` gives back the
masked weight exactly, ``metadata_bits`` is what the hardware models charge for the index,
``to_arrays()`` / ``EncodedLayer.from_arrays`` save and load it as numpy arrays.

A scheme names its codec (``PruningScheme.codec``); codecs are keyed by format, not by
scheme, so a new scheme reuses one (a bitmask stores any mask) or registers its own with
``register_codec(name, encode, decode)``. The codecs:

- ``bitmask`` (unstructured): a bitmask (one bit per weight) and the kept values.
- ``n-of-m`` (balanced): per output channel, the kept values group by group and each
  one's ``ceil(log2 m)``-bit index within its group (Kang); every group keeps the same
  count.
- ``pattern-spm`` (pattern): PCNN's Sparsity Pattern Mask: the pattern dictionary
  (``P x kh*kw`` bits), one ``ceil(log2 P)``-bit pattern id per kernel, and
  equal-length value sequences.
- ``ikr-shapes`` (ikr): a ``ceil(log2 S)``-bit shape id per kernel into the fixed IKR
  shape set of its kept count (``pruning.schemes.ikr.ikr_shapes``; the hardware knows
  it: no dictionary).
- ``channel`` (channel): the kept output-channel indices (``ceil(log2 Cout)`` bits each)
  and their dense rows.
- ``crossbar-table`` (crossbar): the crossbar mapping table: the input-channel order
  (when reordered, ``ceil(log2 Cin)`` bits per channel), then per row-block either which
  crossbars exist (``grain="crossbar"``: one bit per crossbar) or which output column
  each used crossbar column carries after recombination (``grain="column"``:
  ``ceil(log2 Cout)`` bits per kept column); values are the used crossbars' cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from hwmodels import LayerSpec
from pruning.base import PruningScheme, get_scheme
from pruning.schemes._common import bits_for, check_weight
from pruning.schemes.crossbar import CrossbarScheme
from pruning.schemes.ikr import ikr_shapes

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class EncodedLayer:
    """One layer in its scheme's sparse format (see the module docstring).

    ``codec`` names the encoding (a ``CODECS`` key), ``shape`` the weight's shape;
    ``arrays`` hold the format; ``metadata_bits`` counts index bits only (values
    excluded) and ``value_count`` the values stored (zeros stored inside a kept block or
    channel included).
    """

    codec: str
    shape: tuple[int, ...]
    arrays: Arrays = field(repr=False)
    metadata_bits: int
    value_count: int

    def decode(self) -> torch.Tensor:
        """The masked weight, exactly (zeros where the mask removed weights)."""
        return torch.from_numpy(codec(self.codec).decode(self.shape, self.arrays))

    def to_arrays(self) -> Arrays:
        """Everything as numpy arrays (for ``np.savez``); ``from_arrays`` reads it back."""
        head = {
            "codec": np.array(self.codec),
            "shape": np.array(self.shape, dtype=np.int64),
            "metadata_bits": np.array(self.metadata_bits, dtype=np.int64),
            "value_count": np.array(self.value_count, dtype=np.int64),
        }
        return head | {f"data_{k}": v for k, v in self.arrays.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EncodedLayer:
        """Rebuild an ``EncodedLayer`` from ``to_arrays()``'s output."""
        # Exports written before codecs were keyed by format name the scheme instead.
        name = str(arrays["codec"]) if "codec" in arrays else str(arrays["scheme"])
        return cls(
            codec=_LEGACY_CODECS.get(name, name),
            shape=tuple(int(s) for s in arrays["shape"]),
            arrays={k[5:]: v for k, v in arrays.items() if k.startswith("data_")},
            metadata_bits=int(arrays["metadata_bits"]),
            value_count=int(arrays["value_count"]),
        )


def _index_dtype(count: int) -> type:
    return np.uint8 if count <= 256 else np.uint16 if count <= 65536 else np.int64


def _uniform_count(kept: np.ndarray, what: str) -> int:
    """The single count in ``kept``, or ``ValueError`` (the format needs equal counts)."""
    counts = np.unique(kept)
    if counts.size > 1:
        raise ValueError(f"mask is not {what}: counts {counts[:8].tolist()} differ")
    return int(counts[0]) if counts.size else 0


# --- unstructured: bitmask --------------------------------------------------------------


def _encode_bitmask(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    arrays = {"bitmask": np.packbits(m.reshape(-1)), "values": w[m]}
    return arrays, int(m.size), int(m.sum())


def _decode_bitmask(shape: tuple[int, ...], a: Arrays) -> np.ndarray:
    size = math.prod(shape)
    keep = np.unpackbits(a["bitmask"], count=size).astype(bool)
    out = np.zeros(size, dtype=a["values"].dtype)
    out[keep] = a["values"]
    return out.reshape(shape)


# --- balanced: n-of-m ---------------------------------------------------------------------


def _group_geometry(fan_in: int, m: int) -> np.ndarray:
    """Start offset of every group along K (the last may be short)."""
    return np.arange(0, fan_in, m)


def _encode_n_of_m(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    size = int(scheme.group_size)
    rows_m, rows_w = m.reshape(m.shape[0], -1), w.reshape(w.shape[0], -1)
    fan_in = rows_m.shape[1]
    starts = _group_geometry(fan_in, size)
    counts = np.add.reduceat(rows_m.astype(np.int64), starts, axis=1)  # (Cout, groups)
    full = fan_in // size
    n = _uniform_count(counts[:, :full], f"balanced ({size}-groups)") if full else 0
    n_last = _uniform_count(counts[:, full:], "balanced (short group)") if fan_in % size else 0
    cols = np.nonzero(rows_m)[1].reshape(rows_m.shape[0], -1)  # row-major: group by group
    arrays = {
        "params": np.array([size, n, n_last], dtype=np.int64),
        "indices": (cols % size).astype(_index_dtype(size)),
        "values": rows_w[rows_m].reshape(rows_m.shape[0], -1),
    }
    return arrays, int(cols.size) * bits_for(size), int(cols.size)


def _decode_n_of_m(shape: tuple[int, ...], a: Arrays) -> np.ndarray:
    size, n, n_last = (int(v) for v in a["params"])
    cout, fan_in = shape[0], math.prod(shape[1:])
    full = fan_in // size
    group_of_slot = np.concatenate([np.repeat(np.arange(full), n), np.full(n_last, full)])
    cols = group_of_slot[None, :] * size + a["indices"].astype(np.int64)
    out = np.zeros((cout, fan_in), dtype=a["values"].dtype)
    np.put_along_axis(out, cols, a["values"], axis=1)
    return out.reshape(shape)


# --- pattern / ikr: pattern id per kernel ----------------------------------------------------


def _kernel_rows(arr: np.ndarray, layer: LayerSpec) -> np.ndarray:
    return arr.reshape(-1, layer.kernel[0] * layer.kernel[1])


def _encode_patterns(dictionary: np.ndarray, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    """Ids of each kernel's pattern in ``dictionary``, and the kept values in order."""
    kernels = _kernel_rows(m, layer)
    n = _uniform_count(kernels.sum(1), "n weights per kernel")
    codes = {row.tobytes(): i for i, row in enumerate(dictionary)}
    try:
        ids = np.array([codes[row.tobytes()] for row in kernels], dtype=np.int64)
    except KeyError as exc:
        raise ValueError("mask has a kernel pattern outside the scheme's allowed set") from exc
    values = _kernel_rows(w, layer)[kernels].reshape(len(kernels), n)
    return ids.astype(_index_dtype(len(dictionary))), values


def _encode_pattern(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    dictionary = np.unique(_kernel_rows(m, layer), axis=0)
    ids, values = _encode_patterns(dictionary, w, m, layer)
    bits = ids.size * bits_for(len(dictionary)) + dictionary.size
    arrays = {"dictionary": dictionary, "ids": ids, "values": values}
    return arrays, bits, int(values.size)


def _encode_ikr(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    n = _uniform_count(_kernel_rows(m, layer).sum(1), "n weights per kernel")
    table = ikr_shapes(*layer.kernel)
    if n not in table:
        raise ValueError(f"no IKR shape keeps {n} weights; valid counts: {sorted(table)}")
    ids, values = _encode_patterns(table[n], w, m, layer)
    # The shape set is fixed, so the dictionary is stored only to decode here: not charged.
    arrays = {"dictionary": table[n], "ids": ids, "values": values}
    return arrays, ids.size * bits_for(len(table[n])), int(values.size)


def _decode_patterns(shape: tuple[int, ...], a: Arrays) -> np.ndarray:
    kernels = a["dictionary"][a["ids"].astype(np.int64)]
    out = np.zeros(kernels.shape, dtype=a["values"].dtype)
    out[kernels] = a["values"].reshape(-1)
    return out.reshape(shape)


# --- channel: kept channel indices -----------------------------------------------------------


def _encode_channel(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    kept = np.flatnonzero(m.reshape(m.shape[0], -1).any(1))
    values = np.where(m, w, 0)[kept]
    arrays = {"kept": kept.astype(np.int64), "values": values}
    return arrays, kept.size * bits_for(m.shape[0]), int(values.size)


def _decode_channel(shape: tuple[int, ...], a: Arrays) -> np.ndarray:
    out = np.zeros(shape, dtype=a["values"].dtype)
    out[a["kept"]] = a["values"]
    return out


# --- crossbar: mapping table -----------------------------------------------------------------


def _encode_crossbar(scheme: PruningScheme, w: np.ndarray, m: np.ndarray, layer: LayerSpec):
    assert isinstance(scheme, CrossbarScheme)
    geo = scheme.geometry(layer)
    recorded = scheme.input_order(torch.from_numpy(w), layer)
    cin = w.shape[1]
    order = np.arange(cin) if recorded is None else recorded
    # Unrolled K x Cout matrices in the reordered input order.
    mat_m = m[:, order].reshape(m.shape[0], -1).T
    mat_w = np.where(m, w, 0)[:, order].reshape(w.shape[0], -1).T
    bounds = np.minimum(np.arange(geo.row_blocks + 1) * geo.rows_per_block, geo.fan_in)
    arrays: Arrays = {
        "params": np.array([geo.rows_per_block, geo.crossbar_size], dtype=np.int64),
        "order": order.astype(np.int64),
    }
    used_cols = [mat_m[lo:hi].any(0) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    if scheme.grain == "crossbar":
        pad = geo.col_blocks * geo.crossbar_size - geo.out_channels
        blocks = np.stack(
            [np.pad(u, (0, pad)).reshape(geo.col_blocks, -1).any(1) for u in used_cols]
        )
        arrays["blocks"] = blocks
        bits = blocks.size
        used_cols = [np.repeat(b, geo.crossbar_size)[: geo.out_channels] for b in blocks]
    else:
        columns = [np.flatnonzero(u) for u in used_cols]
        arrays["col_ptr"] = np.cumsum([0] + [c.size for c in columns]).astype(np.int64)
        arrays["columns"] = np.concatenate(columns).astype(np.int64)
        bits = int(arrays["columns"].size) * bits_for(geo.out_channels)
    values = [
        mat_w[lo:hi][:, u] for lo, hi, u in zip(bounds[:-1], bounds[1:], used_cols, strict=True)
    ]
    arrays["values"] = np.concatenate([v.reshape(-1) for v in values])
    if recorded is not None:
        bits += cin * bits_for(cin)
    return arrays, bits, int(arrays["values"].size)


def _decode_crossbar(shape: tuple[int, ...], a: Arrays) -> np.ndarray:
    rows_per_block, xb = (int(v) for v in a["params"])
    cout, cin = shape[0], shape[1]
    fan_in = math.prod(shape[1:])
    mat = np.zeros((fan_in, cout), dtype=a["values"].dtype)
    values, pos = a["values"], 0
    for rb, lo in enumerate(range(0, fan_in, rows_per_block)):
        hi = min(lo + rows_per_block, fan_in)
        if "blocks" in a:
            cols = np.flatnonzero(np.repeat(a["blocks"][rb], xb)[:cout])
        else:
            cols = a["columns"][a["col_ptr"][rb] : a["col_ptr"][rb + 1]]
        count = (hi - lo) * cols.size
        mat[lo:hi, cols] = values[pos : pos + count].reshape(hi - lo, cols.size)
        pos += count
    permuted = mat.T.reshape(cout, cin, *shape[2:])
    out = np.empty_like(permuted)
    out[:, a["order"]] = permuted
    return out


Encoder = Callable[[PruningScheme, np.ndarray, np.ndarray, LayerSpec], tuple[Arrays, int, int]]
Decoder = Callable[[tuple[int, ...], Arrays], np.ndarray]


@dataclass(frozen=True)
class Codec:
    """One storage format: ``encode(scheme, w, m, layer) -> (arrays, index_bits,
    value_count)`` on numpy weight and bool mask, ``decode(shape, arrays) -> w * m``."""

    encode: Encoder
    decode: Decoder


#: Codecs by name (``PruningScheme.codec``).
CODECS: dict[str, Codec] = {}


def register_codec(name: str, encode: Encoder, decode: Decoder) -> None:
    """Make codec ``name`` available to schemes (``codec = name``) and to decoding."""
    if name in CODECS:
        raise ValueError(f"codec {name!r} is already registered")
    CODECS[name] = Codec(encode, decode)


def codec(name: str) -> Codec:
    """Codec ``name``; ``KeyError`` naming the registered ones."""
    try:
        return CODECS[name]
    except KeyError:
        raise KeyError(f"no codec {name!r}; registered: {', '.join(CODECS)}") from None


register_codec("bitmask", _encode_bitmask, _decode_bitmask)
register_codec("n-of-m", _encode_n_of_m, _decode_n_of_m)
register_codec("pattern-spm", _encode_pattern, _decode_patterns)
register_codec("ikr-shapes", _encode_ikr, _decode_patterns)
register_codec("channel", _encode_channel, _decode_channel)
register_codec("crossbar-table", _encode_crossbar, _decode_crossbar)
#: Scheme names that exports written before codecs had stored in place of the codec.
_LEGACY_CODECS = {
    "unstructured": "bitmask",
    "balanced": "n-of-m",
    "pattern": "pattern-spm",
    "ikr": "ikr-shapes",
    "crossbar": "crossbar-table",
}


def encode(
    scheme: str | PruningScheme, weight: torch.Tensor, mask: torch.Tensor, layer: LayerSpec
) -> EncodedLayer:
    """Encode ``weight * mask`` in ``scheme``'s index format (a name uses default params).

    ``weight`` may be the unmasked weight (the crossbar format then records the same input
    order the scheme used) or the masked one; either decodes exactly to ``weight * mask``.
    Raises ``ValueError`` when the mask lacks the structure the format needs (unequal counts
    per group or kernel, a kernel shape outside the IKR set).
    """
    scheme = get_scheme(scheme) if isinstance(scheme, str) else scheme
    fmt = codec(scheme.codec)
    check_weight(weight, layer)
    if tuple(mask.shape) != tuple(weight.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} != weight shape {tuple(weight.shape)}")
    w = weight.detach().cpu().numpy()
    m = mask.detach().cpu().numpy().astype(bool)
    arrays, bits, count = fmt.encode(scheme, w, m, layer)
    return EncodedLayer(scheme.codec, tuple(weight.shape), arrays, int(bits), int(count))
