"""Core types: registry, LayerSpec, Cost, layer inspection, applying masks."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from core import Registry
from hwmodels import Cost, LayerSpec, resolve_metric, unroll
from pruning import MaskSwitcher, apply_masks, inspect_model, make_permanent
from tests.conftest import tiny_cnn


def test_registry_suggests_close_names_and_lists_choices() -> None:
    reg: Registry[int] = Registry("widget")
    reg.register("balanced", lambda: 1)
    reg.register("channel", lambda: 2)
    assert reg.build("balanced") == 1
    with pytest.raises(KeyError, match="Did you mean 'balanced'.*Valid choices: balanced, channel"):
        reg.build("balanced2")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("channel", lambda: 3)


def test_cost_adds_fieldwise_and_sums_from_zero() -> None:
    a = Cost(cycles=1, latency_s=2, energy_j=3, area_mm2=4, resources=5, memory_bytes=6)
    total = sum([a, a, a])
    assert total == Cost(3, 6, 9, 12, 15, 18)
    assert total.get("latency") == 6 and total.get("energy_j") == 9


def test_unknown_metric_names_choices() -> None:
    with pytest.raises(ValueError, match="unknown cost metric 'speed'.*latency"):
        resolve_metric("speed")


def test_layerspec_shapes_and_unroll() -> None:
    spec = LayerSpec("c", "grouped", 8, 16, kernel=(3, 3), groups=2, out_hw=(4, 4))
    assert spec.weight_shape == (16, 4, 3, 3)
    assert spec.fan_in == 36 and spec.params == 576 and spec.macs == 576 * 16
    mask = torch.ones(spec.weight_shape, dtype=torch.bool).numpy()
    assert unroll(mask, spec).shape == (16, 36)
    with pytest.raises(ValueError, match="does not match weight shape"):
        unroll(mask[:8], spec)
    with pytest.raises(ValueError, match="not divisible by groups"):
        LayerSpec("bad", "grouped", 6, 16, groups=4)


def test_inspect_finds_every_layer_in_execution_order() -> None:
    specs = inspect_model(tiny_cnn(), torch.zeros(2, 1, 8, 8))
    assert [s.name for s in specs] == ["0", "3", "5", "9"]
    third = specs[2]
    assert (third.in_hw, third.out_hw, third.stride) == ((8, 8), (4, 4), (2, 2))
    assert specs[-1].kind == "linear" and specs[-1].in_channels == 32
    assert all(s.batch == 2 for s in specs)


@pytest.mark.parametrize(
    ("name", "kinds"),
    [("mobilenet_v2", {"conv", "depthwise", "linear"}), ("resnet18", {"conv", "linear"})],
)
def test_inspect_handles_torchvision_models(name: str, kinds: set[str]) -> None:
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    specs = inspect_model(model, torch.zeros(1, 3, 64, 64))
    assert {s.kind for s in specs} == kinds
    named = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert {s.name for s in specs} == named


def test_apply_masks_uses_torch_prune_and_remove_makes_it_permanent() -> None:
    model = tiny_cnn()
    mask = torch.zeros_like(model[0].weight, dtype=torch.bool)
    mask[:4] = True
    apply_masks(model, {"0.weight": mask})
    assert hasattr(model[0], "weight_orig") and hasattr(model[0], "weight_mask")
    assert torch.all(model[0].weight[4:] == 0)
    make_permanent(model)
    assert not hasattr(model[0], "weight_orig")
    assert isinstance(model[0].weight, nn.Parameter)
    assert torch.all(model[0].weight[4:] == 0) and torch.any(model[0].weight[:4] != 0)


def test_apply_masks_rejects_bad_keys_and_shapes() -> None:
    model = tiny_cnn()
    with pytest.raises(KeyError, match="no module 'nope'"):
        apply_masks(model, {"nope.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="has shape"):
        apply_masks(model, {"0.weight": torch.ones(3, dtype=torch.bool)})


def test_mask_switcher_swaps_and_resets_masks() -> None:
    model = tiny_cnn()
    x = torch.randn(4, 1, 8, 8)
    dense_out = model(x)
    switcher = MaskSwitcher(model)
    zero = torch.zeros_like(model[3].weight, dtype=torch.bool)
    switcher.set({"3.weight": zero})
    assert torch.all(model[3].weight == 0)
    switcher.set({"0.weight": torch.zeros_like(model[0].weight, dtype=torch.bool)})
    # The earlier mask is reset to all-ones when not given again.
    assert torch.all(model[3].weight == model[3].weight_orig)
    switcher.set({})
    assert torch.allclose(model(x), dense_out)
