"""The classifier-head re-fit: exact masked least squares, and its use in the proxy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from envs.proxies.builtin import get_proxy
from envs.proxies.headfit import HeadRefit, refit_masked_linear
from envs.workloads.base import Workload
from envs.workloads.evaluation import accuracy, bn_calibration_batches, reestimate_batchnorm


def _direct_row_solutions(x, t, w0, b0, mask, ridge):
    """Reference: each row's ridge problem on its support, solved densely."""
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    gram = x1.T @ x1 / x.shape[0]
    reg = ridge * gram.diagonal().mean()
    anchor = torch.cat([w0, b0[:, None]], 1)
    keep = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=torch.bool)], 1)
    out = torch.zeros_like(anchor)
    for k in range(anchor.shape[0]):
        s = keep[k].nonzero().flatten()
        a = gram[s][:, s] + reg * torch.eye(len(s), dtype=x.dtype)
        rhs = (x1[:, s].T @ t[:, k]) / x.shape[0] + reg * anchor[k, s]
        out[k, s] = torch.linalg.solve(a, rhs)
    return out[:, :-1], out[:, -1]


@pytest.mark.parametrize("ridge", [1e-3, 1e-1])
def test_refit_matches_per_row_direct_solve(ridge: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64)
    t = torch.randn(200, 5, generator=g, dtype=torch.float64)
    w0 = torch.randn(5, 12, generator=g, dtype=torch.float64)
    b0 = torch.randn(5, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 12, generator=g) < 0.4
    mask[0] = False  # a row with no kept weight: only its bias is fitted
    w, b = refit_masked_linear(x, t, w0, b0, mask, ridge=ridge, max_iter=100, tol=1e-12)
    ref_w, ref_b = _direct_row_solutions(x, t, w0, b0, mask, ridge)
    assert torch.all(w[~mask] == 0)
    torch.testing.assert_close(w, ref_w, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(b, ref_b, rtol=1e-7, atol=1e-8)


def test_refit_recovers_exact_linear_map_and_handles_no_bias() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 8, generator=g)
    true_w = torch.randn(3, 8, generator=g)
    w, b = refit_masked_linear(x, x @ true_w.T, torch.zeros(3, 8), None, ridge=1e-8)
    assert b is None
    torch.testing.assert_close(w, true_w, rtol=1e-4, atol=1e-4)


def test_refit_rejects_bad_shapes_and_ridge() -> None:
    x, t = torch.randn(10, 4), torch.randn(10, 2)
    with pytest.raises(ValueError, match="weight must be"):
        refit_masked_linear(x, t, torch.zeros(3, 4), None)
    with pytest.raises(ValueError, match="share N"):
        refit_masked_linear(x, t[:5], torch.zeros(2, 4), None)
    with pytest.raises(ValueError, match="ridge"):
        refit_masked_linear(x, t, torch.zeros(2, 4), None, ridge=0.0)


def test_head_is_found_only_when_the_output_is_a_linear() -> None:
    images = [torch.randn(4, 3, 8, 8)]
    convnet = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert HeadRefit.from_model(convnet, images) is None
    linear_head = nn.Sequential(nn.Flatten(), nn.Linear(192, 6), nn.ReLU(), nn.Linear(6, 4))
    refit = HeadRefit.from_model(linear_head, images)
    assert refit is not None and refit.head == "3"
    assert refit.targets.shape == (4, 4)
    with pytest.raises(ValueError, match="calibration batch"):
        HeadRefit.from_model(linear_head, [])


def test_refit_keeps_the_head_mask_and_improves_the_fit(digits: Workload) -> None:
    batches = bn_calibration_batches(digits.train)
    model = copy.deepcopy(digits.model)
    refit = HeadRefit.from_model(model, batches)
    assert refit is not None
    head = model.get_submodule(refit.head)
    prune.l1_unstructured(head, "weight", amount=0.8)
    prune.l1_unstructured(model.get_submodule("features.0"), "weight", amount=0.7)
    reestimate_batchnorm(model, batches)
    calib = torch.cat(batches)

    def fit_error() -> float:
        with torch.no_grad():
            return float(((model(calib) - refit.targets) ** 2).mean())

    before, mask = fit_error(), head.weight_mask.clone()
    refit.apply(model)
    assert fit_error() < before
    assert torch.equal(head.weight_mask, mask)
    assert torch.all(head.weight[mask == 0] == 0)
    # Unpruned parts of the network are untouched, the workload's own model too.
    assert torch.equal(
        model.get_submodule("features.0").weight_orig,
        digits.model.get_submodule("features.0").weight,
    )


def test_holdout_proxy_refit_option(digits: Workload) -> None:
    with pytest.raises(ValueError, match="bn_batches"):
        get_proxy("holdout", workload=digits, bn_batches=0)
    g = torch.Generator().manual_seed(0)
    masks = {
        name: torch.rand(p.shape, generator=g) < 0.15
        for name, p in digits.model.named_parameters()
        if p.dim() > 1
    }
    with_refit = get_proxy("holdout", workload=digits).evaluate(masks)
    bn_only = get_proxy("holdout", workload=digits, refit_head=False).evaluate(masks)
    assert 0.0 <= bn_only <= 1.0 and 0.0 <= with_refit <= 1.0
    assert with_refit != bn_only
    # The dense network is (almost) unchanged by a re-fit to its own logits.
    dense = get_proxy("holdout", workload=digits).evaluate({})
    assert dense == pytest.approx(accuracy(digits.model, digits.holdout), abs=0.02)
