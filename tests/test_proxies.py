"""Accuracy proxies on the cached digits-cnn workload."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from envs.evaluation import accuracy
from envs.proxies import get_proxy, list_proxies
from envs.workload import Workload
from pruning import inspect_model


def uniform_masks(workload: Workload, density: float) -> dict[str, torch.Tensor]:
    """Per-layer unstructured magnitude masks keeping ``density`` of every layer."""
    named = dict(workload.model.named_parameters())
    masks = {}
    for spec in inspect_model(workload.model, workload.example_input):
        w = named[spec.name + ".weight"].detach().abs().flatten()
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[torch.topk(w, max(1, round(density * w.numel()))).indices] = True
        masks[spec.name + ".weight"] = keep.view_as(named[spec.name + ".weight"])
    return masks


def test_registry_and_errors(digits: Workload) -> None:
    assert {"holdout", "finetune", "weight-energy"} <= set(list_proxies())
    with pytest.raises(KeyError, match="holdout"):
        get_proxy("holdot", workload=digits)
    with pytest.raises(TypeError, match="bn_batches"):
        get_proxy("holdout", workload=digits, steps=3)
    with pytest.raises(ValueError, match="sensitivity"):
        get_proxy("weight-energy", workload=digits, sensitivity="hessian")
    with pytest.raises(ValueError, match="steps"):
        get_proxy("finetune", workload=digits, steps=0)


@pytest.mark.parametrize("name", ["holdout", "finetune", "weight-energy"])
def test_proxy_contract(digits: Workload, name: str) -> None:
    before = {k: v.clone() for k, v in digits.model.state_dict().items()}
    proxy = get_proxy(name, workload=digits, **({"steps": 5} if name == "finetune" else {}))
    dense = proxy.evaluate({})
    pruned = proxy.evaluate(uniform_masks(digits, 0.05))
    assert 0.0 <= pruned < dense <= 1.0
    # Same masks, same score: nothing leaks from one evaluation into the next.
    assert proxy.evaluate({}) == pytest.approx(dense, abs=1e-9)
    with pytest.raises((KeyError, ValueError)):
        proxy.evaluate({"nope.weight": torch.ones(3, dtype=torch.bool)})
    # The workload's own model is never modified.
    after = digits.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_holdout_dense_matches_accuracy(digits: Workload) -> None:
    raw = get_proxy("holdout", workload=digits, bn_batches=0, refit_head=False)
    assert raw.evaluate({}) == pytest.approx(accuracy(digits.model, digits.holdout))
    adapted = get_proxy("holdout", workload=digits)
    assert abs(adapted.evaluate({}) - raw.evaluate({})) <= 0.02


def test_bn_reestimation_rescues_heavily_pruned_network(digits: Workload) -> None:
    masks = uniform_masks(digits, 0.2)  # uniform 80% unstructured pruning
    raw = get_proxy("holdout", workload=digits, bn_batches=0, refit_head=False).evaluate(masks)
    adapted = get_proxy("holdout", workload=digits).evaluate(masks)
    assert raw <= 0.3
    assert adapted >= raw + 0.2


def test_finetune_keeps_masks_and_restores_weights(digits: Workload) -> None:
    masks = uniform_masks(digits, 0.2)
    proxy = get_proxy("finetune", workload=digits, steps=15)
    first = proxy.evaluate(masks)
    # Masked weights are still exactly zero after the fine-tune.
    for key, keep in masks.items():
        module = proxy.model.get_submodule(key.rpartition(".")[0])
        assert torch.all(module.weight[~keep] == 0), key
    # Restored to the trained weights before each evaluation: same result again.
    assert proxy.evaluate(masks) == pytest.approx(first, abs=1e-9)
    assert first > get_proxy("holdout", workload=digits).evaluate(masks)


def test_weight_energy_is_monotone(digits: Workload) -> None:
    for sensitivity in ("holdout", "params"):
        proxy = get_proxy("weight-energy", workload=digits, sensitivity=sensitivity)
        scores = [proxy.evaluate(uniform_masks(digits, d)) for d in (1.0, 0.6, 0.3, 0.1)]
        assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    proxy = get_proxy("weight-energy", workload=digits, sensitivity="params")
    assert proxy.evaluate({}) == 1.0
    key = next(iter(uniform_masks(digits, 0.5)))
    with pytest.raises(ValueError, match="shape"):
        proxy.evaluate({key: torch.ones(2, 2, dtype=torch.bool)})
    # BatchNorm masks (added by channel schemes) are accepted and do not enter the score.
    bn = next(n for n, m in digits.model.named_modules() if isinstance(m, nn.BatchNorm2d))
    bn_w = dict(digits.model.named_parameters())[bn + ".weight"]
    assert proxy.evaluate({bn + ".weight": torch.zeros_like(bn_w, dtype=torch.bool)}) == 1.0


def test_holdout_energy_blends_its_two_scores(digits: Workload) -> None:
    from envs.proxies import HoldoutEnergyProxy

    task_masks = {}
    for name, param in digits.model.named_parameters():
        if name.endswith("weight") and param.dim() == 4:
            keep = param.detach().abs() >= param.detach().abs().median()
            task_masks[name] = keep
    blend = get_proxy("holdout-energy", workload=digits, energy_weight=1.0)
    assert isinstance(blend, HoldoutEnergyProxy)
    h = get_proxy("holdout", workload=digits).evaluate(task_masks)
    e = get_proxy("weight-energy", workload=digits).evaluate(task_masks)
    assert blend.evaluate(task_masks) == pytest.approx((h + e) / 2)
    only_holdout = get_proxy("holdout-energy", workload=digits, energy_weight=0.0)
    assert only_holdout.evaluate(task_masks) == pytest.approx(h)
    with pytest.raises(ValueError, match="energy_weight must be >= 0"):
        get_proxy("holdout-energy", workload=digits, energy_weight=-1.0)
