"""Contract tests every registered scheme passes, on single layers and on real networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from envs.workloads.models import DigitsCNN
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
    # A density between a level and the next level's floor rounds down; exact=True refuses it.
    floors = scheme.floors(layer)
    assert len(floors) == len(levels) and np.all(floors <= levels)
    if len(levels) > 1:
        mid = float(levels[0] + floors[1]) / 2
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


#: Layer sizes where a grid count lies a hair above its grid point (4,608, 73,728 and
#: 147,456 weights keep 461, 7,373 and 14,746 at 0.1), beside the contract layers.
SNAP_LAYERS = [
    LayerSpec("c16_32", "conv", 16, 32, (3, 3)),
    LayerSpec("c64_128", "conv", 64, 128, (3, 3)),
    LayerSpec("c128_128", "conv", 128, 128, (3, 3)),
    LayerSpec("first", "conv", 3, 16, (3, 3)),
    *LAYERS,
]
#: Requests users type: a 20-step grid, n-of-16 and k-of-9 fractions, and a few odd ones.
SNAP_REQUESTS = sorted(
    {round(j / 20, 12) for j in range(1, 21)}
    | {n / 16 for n in range(1, 17)}
    | {k / 9 for k in range(1, 10)}
    | {0.33, 0.123, 0.7071}
)


@pytest.mark.parametrize("name", list_schemes())
@pytest.mark.parametrize("layer", SNAP_LAYERS, ids=lambda ly: ly.name)
def test_snap_never_falls_a_whole_level_below(name, layer):
    """A request gets at least the nearest level at or under it, counting a level a hair
    (0.1%) above the request as at it (a grid count rounded up), so never a whole level
    below it; and never more than the nearest level at or over it."""
    scheme = get_scheme(name)
    levels = scheme.levels(layer)
    w = _weight(layer, seed=1)
    for d in SNAP_REQUESTS:
        got = scheme.snap(d, layer)  # the level the mask realises (in the scheme's units)
        assert torch.equal(scheme.mask(w, d, layer), scheme.mask(w, got, layer, exact=True))
        at_or_under = levels[levels <= d * (1 + 1e-3) + 1e-9]
        floor = at_or_under[-1] if len(at_or_under) else levels[0]
        ceiling = levels[levels >= d - 1e-9][0]
        assert floor - 1e-9 <= got <= ceiling + 1e-9, (d, got, floor, ceiling)


@pytest.mark.parametrize("layer", SNAP_LAYERS, ids=lambda ly: ly.name)
@pytest.mark.parametrize("steps", [10, 20])
def test_unstructured_grid_request_gets_its_grid_count(layer, steps):
    """``j / steps`` keeps exactly the count ``torch.nn.utils.prune`` would keep for it
    (the bug: 0.1 kept 5% on 4,608 weights, a whole level below the 461 weights of 10%)."""
    scheme = get_scheme("unstructured", steps=steps)
    w = _weight(layer, seed=2)
    n = layer.params
    for j in range(1, steps + 1):
        want = n - round((1 - j / steps) * n)
        if n <= steps or want < 1:
            continue
        assert int(scheme.mask(w, j / steps, layer).sum()) == want, (j, want)


@pytest.mark.parametrize("layer", SNAP_LAYERS, ids=lambda ly: ly.name)
def test_balanced_request_n_of_m_keeps_n_per_full_group(layer):
    """A request of ``n / m`` keeps ``n`` of every full group, even where a short last group
    rounds its quota up and puts the realised density a hair above ``n / m``."""
    m = 16
    scheme = get_scheme("balanced", group_size=m)
    w = _weight(layer, seed=3)
    k = layer.fan_in
    if k < m:
        pytest.skip("no full group on this layer")
    for n in range(1, m + 1):
        keep = scheme.mask(w, n / m, layer).reshape(layer.out_channels, k)
        full = keep[:, : (k // m) * m].reshape(layer.out_channels, -1, m)
        assert bool((full.sum(-1) == n).all()), n
