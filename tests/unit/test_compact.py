"""Channel scheme on real networks: coupled groups, completed masks, compact export."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from hwmodels import LayerSpec
from pruning import apply_masks, get_scheme, inspect_model
from pruning.compact import compact_model


class ConcatNet(nn.Module):
    """A small CNN with a concatenation, a depthwise conv, a bias-only conv and a flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Conv2d(3, 24, 1)  # no BatchNorm: its bias must be masked too
        self.dw = nn.Sequential(
            nn.Conv2d(40, 40, 3, padding=1, groups=40, bias=False), nn.BatchNorm2d(40), nn.ReLU()
        )
        self.pw = nn.Sequential(nn.Conv2d(40, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(32 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), torch.relu(self.b(x))], dim=1)
        return self.fc(self.pw(self.dw(y)).flatten(1))


def _randomise_bn(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            nn.init.normal_(m.bias, std=0.1)


def channel_masks(model, x, density, scheme):
    layers = inspect_model(model, x)
    byname = {ly.name: ly for ly in layers}
    params = dict(model.named_parameters())
    masks = {}
    for group in scheme.coupled_groups(model, x, layers):
        weights = [params[f"{n}.weight"] for n in group]
        group_masks = scheme.group_masks(weights, [byname[n] for n in group], density)
        masks.update({f"{n}.weight": m for n, m in zip(group, group_masks, strict=True)})
    return layers, masks


MODELS = {
    "concat": (ConcatNet, (2, 3, 16, 16)),
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), (2, 3, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), (2, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_compact_matches_masked_model(name):
    ctor, shape = MODELS[name]
    torch.manual_seed(0)
    model = ctor().eval()
    _randomise_bn(model)
    x = torch.randn(shape)
    scheme = get_scheme("channel", round_to=8)
    layers, masks = channel_masks(model, x, 0.5, scheme)
    full = scheme.complete_masks(model, masks)
    assert set(masks) < set(full)  # biases, BatchNorms and next-layer inputs were added
    masked = apply_masks(copy.deepcopy(model), full)
    small = compact_model(model, x, masks)
    with torch.no_grad():
        want, got = masked(x), small(x)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-3)
    n_params = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in small.parameters()) < 0.6 * n_params
    # Pruned layers keep a multiple of 8 channels, coupled layers the same count.
    small_layers = {ly.name: ly for ly in inspect_model(small, x)}
    for group in scheme.coupled_groups(model, x, layers):
        counts = {small_layers[n].out_channels for n in group}
        assert len(counts) == 1 and counts.pop() % 8 == 0
    assert small_layers[layers[-1].name].out_channels == layers[-1].out_channels
    assert not any(n.endswith("_orig") for n, _ in small.named_parameters())


def test_masked_channels_output_zero_and_groups_are_consistent():
    model = ConcatNet().eval()
    x = torch.randn(2, 3, 16, 16)
    scheme = get_scheme("channel", round_to=8)
    layers = inspect_model(model, x)
    # The depthwise conv after the concatenation follows a.0 and b: no decision of its own.
    assert scheme.coupled_groups(model, x, layers) == [["a.0"], ["b"], ["pw.0"]]
    assert scheme.frozen_layers(model, x, layers) == ["dw.0", "fc"]
    _, masks = channel_masks(model, x, 0.5, scheme)
    full = scheme.complete_masks(model, masks)
    # b has no BatchNorm: its bias is masked, and the depthwise conv loses b's channels.
    dead_b = ~masks["b.weight"].reshape(24, -1).any(1)
    assert not full["b.bias"][dead_b].any()
    assert not full["dw.0.weight"][16:][dead_b].any()
    out = {}
    model_masked = apply_masks(copy.deepcopy(model), full)
    model_masked.b.register_forward_hook(lambda m, i, o: out.setdefault("b", o))
    model_masked(x)
    assert out["b"][:, dead_b].abs().max() == 0


def test_group_masks_share_indices_and_errors():
    scheme = get_scheme("channel", round_to=4)
    layers = [LayerSpec(n, "conv", 8, 16, (3, 3)) for n in ("x", "y")]
    weights = [torch.randn(ly.weight_shape) for ly in layers]
    per_level = scheme.group_masks_for_levels(weights, layers)
    assert len(per_level) == len(scheme.levels(layers[0]))
    for pair in per_level:
        assert torch.equal(pair[0][:, 0, 0, 0], pair[1][:, 0, 0, 0])
    odd = LayerSpec("z", "conv", 8, 12, (3, 3))
    with pytest.raises(ValueError, match="different channel counts"):
        scheme.group_masks([weights[0], torch.randn(odd.weight_shape)], [layers[0], odd], 0.5)
    with pytest.raises(ValueError, match="no dependency plan"):
        scheme.complete_masks(nn.Linear(3, 3), {})


def test_compact_refuses_to_remove_every_channel():
    model = ConcatNet().eval()
    x = torch.randn(1, 3, 16, 16)
    masks = {"pw.0.weight": torch.zeros(32, 40, 1, 1, dtype=torch.bool)}
    with pytest.raises(ValueError, match="all 32 channels"):
        compact_model(model, x, masks)
