"""The ReRAM presets' crossbar counts against MNSIM 2.0's mapping (stored reference)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwmodels import LayerSpec, get_hardware

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "validate_mnsim.json"
DATA = json.loads(RESULTS.read_text(encoding="utf-8"))
SHAPES = {
    "vgg-conv1": ("conv", 3, 64, 3),
    "vgg-conv3": ("conv", 128, 256, 3),
    "vgg-conv5": ("conv", 512, 512, 3),
    "resnet-3x3": ("conv", 64, 64, 3),
    "resnet-1x1": ("conv", 256, 64, 1),
    "resnet-7x7-stem": ("conv", 3, 64, 7),
    "odd-3x3-37-75": ("conv", 37, 75, 3),
    "odd-5x5-3-6": ("conv", 3, 6, 5),
    "linear-512-10": ("linear", 512, 10, 1),
    "linear-4096-1000": ("linear", 4096, 1000, 1),
}


@pytest.mark.parametrize("row", DATA["layers"], ids=lambda r: f"{r['preset']}-{r['layer']}")
def test_crossbar_counts_agree_with_mnsim(row: dict) -> None:
    kind, cin, cout, k = SHAPES[row["layer"]]
    layer = LayerSpec(row["layer"], kind, cin, cout, (k, k))
    hw = get_hardware(row["preset"])
    # The same tiling: row blocks x column blocks.
    assert hw.mapping(layer).crossbars == row["mnsim"]["logical"]
    # With MNSIM's cells (1 bit) and the sign in the pair (7 magnitude bits): the same count.
    one_bit = hw.with_params(bits_per_cell=1, weight_bits=7)
    assert one_bit.cost(layer).resources == row["mnsim"]["crossbars"]
    # The presets' own 2-bit cells and 8 bits on each array: 8 crossbars a tile, not 14.
    assert hw.cost(layer).resources == row["mnsim"]["logical"] * 8


def test_every_difference_is_stated() -> None:
    for preset in DATA["figures"].values():
        assert set(preset["mnsim"]) <= set(DATA["differences"])
