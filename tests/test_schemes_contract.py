"""Contract tests every registered scheme passes, on single layers and on real networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from envs.models import DigitsCNN
from hwmodels import INDEX_FORMATS, HardwareModel, LayerSpec
from pruning import get_scheme, inspect_model, list_schemes
from pruning.formats import encode

LAYERS = [
    LayerSpec("conv3", "conv", 16, 24, (3, 3)),
    LayerSpec("conv5", "conv", 6, 10, (5, 5)),
    LayerSpec("dw", "depthwise", 12, 12, (3, 3), groups=12),
    LayerSpec("grouped", "grouped", 8, 16, (3, 3), groups=2),
    LayerSpec("pw", "conv", 20, 40, (1, 1)),
    LayerSpec("fc", "linear", 50, 10),
]


class _Hardware(HardwareModel):
    """A hardware stub offering every structural key."""

    family = "stub"

    def __init__(self) -> None:
        super().__init__(params=None)

    def cost(self, layer, mask=None):  # pragma: no cover - never called
        raise NotImplementedError

    def structure(self) -> dict[str, int]:
        return {"group_size": 4, "crossbar_size": 32, "channel_multiple": 4, "pattern_count": 3}


def _weight(layer: LayerSpec, seed: int = 0) -> torch.Tensor:
    return torch.randn(layer.weight_shape, generator=torch.Generator().manual_seed(seed))


def _density(mask: torch.Tensor) -> float:
    return mask.sum().item() / mask.numel()


@pytest.mark.parametrize("name", list_schemes())
@pytest.mark.parametrize("layer", LAYERS, ids=lambda ly: ly.name)
def test_scheme_contract(name, layer):
    scheme = get_scheme(name)
    assert scheme.index_format in INDEX_FORMATS
    levels = scheme.levels(layer)
    assert isinstance(levels, np.ndarray) and levels[-1] == 1.0
    assert np.all(np.diff(levels) > 0) and levels[0] > 0
    w = _weight(layer)
    masks = scheme.masks_for_levels(w, layer)
    assert len(masks) == len(levels)
    for level, m in zip(levels, masks, strict=True):
        assert m.dtype == torch.bool and m.shape == w.shape
        assert torch.equal(m, scheme.mask(w, float(level), layer, exact=True))
        enc = encode(scheme, w, m, layer)
        assert torch.equal(enc.decode(), torch.where(m, w, torch.zeros_like(w)))
    assert masks[-1].all(), "the dense level keeps every weight"
    # A density between two levels rounds down; exact=True refuses it.
    if len(levels) > 1:
        mid = float(levels[0] + levels[1]) / 2
        assert torch.equal(scheme.mask(w, mid, layer), masks[0])
        with pytest.raises(ValueError, match="not a level"):
            scheme.mask(w, mid, layer, exact=True)
    with pytest.raises(ValueError, match="outside"):
        scheme.mask(w, 0.0, layer)
    with pytest.raises(ValueError, match="does not match"):
        scheme.mask(w.flatten(), 0.5, layer)


@pytest.mark.parametrize("name", list_schemes())
def test_structure_defaults_from_hardware(name):
    scheme = get_scheme(name, hardware=_Hardware())
    described = scheme.describe()
    accepted = {"balanced": "group_size", "crossbar": "crossbar_size", "pattern": "pattern_count"}
    expected = {"group_size": 4, "crossbar_size": 32, "pattern_count": 3}
    if name in accepted:
        assert described[accepted[name]] == expected[accepted[name]]
    if name == "channel":
        assert described["round_to"] == 4
        assert get_scheme(name, hardware=_Hardware(), round_to=16).describe()["round_to"] == 16


def _check_network(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> None:
    layers = inspect_model(model, x)
    params = dict(model.named_parameters())
    for name in names:
        scheme = get_scheme(name)
        applied = 0
        for layer in layers:
            w = params[f"{layer.name}.weight"]
            levels = scheme.levels(layer)
            applied += len(levels) > 1
            if layer.params > 5_000_000:
                # VGG's 100M-weight classifier: three levels keep memory in bounds.
                levels = levels[[0, len(levels) // 2, -1]] if len(levels) > 2 else levels
            masks = scheme.masks_for_levels(w, layer, levels)
            for level, m in zip(levels, masks, strict=True):
                assert m.shape == w.shape and m.dtype == torch.bool
                if not (name == "crossbar" and scheme.grain == "crossbar"):
                    # Levels are realised densities (crossbar grain: crossbar fractions).
                    assert _density(m) == pytest.approx(level, abs=1e-6)
        assert applied > 0, f"scheme {name} pruned no layer"


@pytest.mark.parametrize(
    "ctor",
    [
        lambda: DigitsCNN(),
        lambda: torchvision.models.resnet18(weights=None),
        lambda: torchvision.models.mobilenet_v2(weights=None),
    ],
    ids=["digits-cnn", "resnet18", "mobilenet_v2"],
)
def test_every_scheme_on_networks(ctor):
    torch.manual_seed(0)
    model = ctor()
    channels = 1 if isinstance(model, DigitsCNN) else 3
    _check_network(model, torch.randn(1, channels, 32, 32), list_schemes())


@pytest.mark.slow
def test_every_scheme_on_vgg11():
    torch.manual_seed(0)
    model = torchvision.models.vgg11(weights=None)
    _check_network(model, torch.randn(1, 3, 32, 32), list_schemes())
