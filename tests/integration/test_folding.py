"""The BatchNorm-folded twin the holdout proxies score with: same outputs, pruned or not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from envs.proxies.builtin import get_proxy
from envs.proxies.folding import FoldedTwin, effective_state
from envs.workloads.base import Workload
from envs.workloads.evaluation import reestimate_batchnorm
from pruning.apply import MaskSwitcher
from tests.conftest import TinyResidual, tiny_cnn


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (fresh layers have 0/1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))


def _random_masks(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random keep-masks for every conv/linear weight and (as channel schemes do) BN weight."""
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            masks[f"{name}.weight"] = torch.rand(m.weight.shape, generator=gen) > 0.4
    return masks


@pytest.mark.parametrize("factory", [tiny_cnn, TinyResidual], ids=["sequential", "residual"])
def test_twin_matches_the_pruned_network(factory) -> None:
    torch.manual_seed(0)
    model = factory().eval()
    _randomise_bn(model, 1)
    twin = FoldedTwin.build(model)
    assert twin is not None
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(twin.pairs) == n_bn  # every BN here follows a conv used only by it
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.module.modules())
    x = torch.randn(8, 1, 8, 8)
    switcher = MaskSwitcher(model)
    for seed in range(3):
        switcher.set(_random_masks(model, seed))
        # Statistics as a proxy scores them: re-estimated on a batch of the pruned network.
        reestimate_batchnorm(model, [torch.randn(16, 1, 8, 8)])
        twin.sync(model)
        with torch.inference_mode():
            expected, got = model(x), twin(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_effective_state_applies_masks() -> None:
    model = tiny_cnn()
    masks = _random_masks(model, 0)
    MaskSwitcher(model).set(masks)
    state = effective_state(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    w = state["0.weight"]
    assert torch.equal(w == 0, ~masks["0.weight"] | (model[0].weight_orig == 0))


def test_untraceable_or_bn_free_networks_get_no_twin() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # control flow on values: torch.fx cannot trace this
                return self.bn(self.conv(x))
            return self.conv(x)

    assert FoldedTwin.build(DataDependent()) is None
    assert FoldedTwin.build(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())) is None


@pytest.mark.parametrize("name", ["holdout", "finetune"])
def test_proxy_scores_with_and_without_the_twin_agree(digits: Workload, name: str) -> None:
    kwargs = {"steps": 3} if name == "finetune" else {"precision": "fp32"}
    folded = get_proxy(name, workload=digits, **kwargs)
    plain = get_proxy(name, workload=digits, **kwargs)
    assert folded._twin is not None
    plain._twin = None  # the unfolded reference
    for seed in range(3):
        masks = {
            k: v for k, v in _random_masks(digits.model, seed).items() if "classifier" not in k
        }
        assert folded.evaluate(masks) == pytest.approx(plain.evaluate(masks), abs=2e-3)
