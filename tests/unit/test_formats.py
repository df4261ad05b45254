"""Index formats: exact round trips, metadata bits, structure checks, saving as arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodels import LayerSpec
from pruning import get_scheme, list_schemes
from pruning.formats import EncodedLayer, encode

SCHEME_PARAMS = {
    "balanced": {"group_size": 8},
    "crossbar": {"crossbar_size": 16},
    "channel": {"round_to": 4},
    "pattern": {"pattern_count": 4},
}
VARIANTS = [(name, SCHEME_PARAMS.get(name, {})) for name in list_schemes()] + [
    ("crossbar", {"crossbar_size": 16, "grain": "column", "reorder": True}),
    ("crossbar", {"crossbar_size": 16, "grain": "crossbar", "reorder": True}),
]


def roundtrip(enc: EncodedLayer, tmp_path=None) -> torch.Tensor:
    back = EncodedLayer.from_arrays(enc.to_arrays())
    assert back.metadata_bits == enc.metadata_bits and back.value_count == enc.value_count
    return back.decode()


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
@settings(max_examples=25, deadline=None)
@given(
    cout=st.integers(1, 20),
    cin=st.integers(1, 12),
    k=st.sampled_from([1, 3]),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_exact(name, params, cout, cin, k, density, seed):
    layer = LayerSpec("l", "conv", cin, cout, (k, k))
    scheme = get_scheme(name, **params)
    w = torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))
    mask = scheme.mask(w, density, layer)
    enc = encode(scheme, w, mask, layer)
    masked = torch.where(mask, w, torch.zeros_like(w))
    assert torch.equal(enc.decode(), masked)
    assert torch.equal(roundtrip(enc), masked)
    # Encoding the already-masked weight decodes to the same tensor.
    assert torch.equal(encode(scheme, masked, mask, layer).decode(), masked)
    assert enc.value_count >= int(mask.sum())
    assert enc.metadata_bits >= 0


def test_metadata_bits_per_format():
    layer = LayerSpec("c", "conv", 16, 8, (3, 3))  # K = 144
    w = torch.randn(layer.weight_shape)

    def bits(name, density, **params):
        scheme = get_scheme(name, **params)
        return encode(scheme, w, scheme.mask(w, density, layer), layer)

    assert bits("unstructured", 0.5).metadata_bits == 8 * 144
    bal = bits("balanced", 0.25, group_size=16)
    assert bal.value_count == 8 * 36 and bal.metadata_bits == 8 * 36 * 4
    pat = bits("pattern", 4 / 9, pattern_count=8)
    kernels = 8 * 16
    used = len(pat.arrays["dictionary"])
    assert used <= 8 and pat.metadata_bits == kernels * math.ceil(math.log2(used)) + used * 9
    ikr = bits("ikr", 4 / 9)
    assert ikr.metadata_bits == kernels * 2  # four 2x2 corner shapes: 2 bits per kernel
    ch = bits("channel", 0.5, round_to=4)
    assert ch.value_count == 4 * 144 and ch.metadata_bits == 4 * 3
    xb = bits("crossbar", 0.5, crossbar_size=32, grain="crossbar")  # 27 rows: 6 x 1 blocks
    assert xb.metadata_bits == 6 and xb.arrays["blocks"].sum() == 3
    col = bits("crossbar", 0.5, crossbar_size=32, grain="column")
    assert col.metadata_bits == 6 * 4 * 3  # 6 row-blocks x 4 kept columns x 3 bits


def test_structure_violations_raise():
    layer = LayerSpec("c", "conv", 2, 3, (3, 3))
    w = torch.randn(layer.weight_shape)
    ragged = torch.zeros(layer.weight_shape, dtype=torch.bool)
    ragged[0, 0, 0, :2] = True
    ragged[1, 0, 0, 0] = True
    for name in ("pattern", "ikr", "balanced"):
        with pytest.raises(ValueError, match="not|differ"):
            encode(name, w, ragged, layer)
    odd = torch.zeros(layer.weight_shape, dtype=torch.bool)
    odd[..., 0, 0] = odd[..., 2, 2] = True  # 2 per kernel: no IKR shape keeps 2
    with pytest.raises(ValueError, match="valid counts"):
        encode("ikr", w, odd, layer)
    with pytest.raises(KeyError, match="unknown scheme"):
        encode("nope", w, odd, layer)


def test_save_and_load_npz(tmp_path):
    layer = LayerSpec("fc", "linear", 40, 6)
    w = torch.randn(layer.weight_shape)
    scheme = get_scheme("balanced", group_size=16)
    enc = encode(scheme, w, scheme.mask(w, 0.25, layer), layer)
    path = tmp_path / "fc.npz"
    np.savez(path, **enc.to_arrays())
    with np.load(path) as data:
        back = EncodedLayer.from_arrays(dict(data))
    assert torch.equal(back.decode(), enc.decode())


def test_exports_written_before_codecs_still_load():
    """An export's arrays named the scheme where they now name the codec."""
    layer = LayerSpec("fc", "linear", 40, 6)
    w = torch.randn(layer.weight_shape)
    scheme = get_scheme("balanced", group_size=16)
    enc = encode(scheme, w, scheme.mask(w, 0.25, layer), layer)
    arrays = enc.to_arrays()
    old = {("scheme" if k == "codec" else k): v for k, v in arrays.items()}
    old["scheme"] = np.array("balanced")
    back = EncodedLayer.from_arrays(old)
    assert back.codec == "n-of-m" and torch.equal(back.decode(), enc.decode())
