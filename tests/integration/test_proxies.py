"""Accuracy proxies on the cached digits-cnn workload."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from envs.proxies.builtin import get_proxy, list_proxies
from envs.workloads.base import Workload
from envs.workloads.evaluation import accuracy
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
    from envs.proxies.builtin import HoldoutEnergyProxy

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


def test_fast_evaluation_is_the_default_and_fp32_can_be_chosen(digits: Workload) -> None:
    from envs.proxies.builtin import DEFAULT_PRECISION, FAST_BN_IMAGES

    fast = get_proxy("holdout", workload=digits)
    full = get_proxy("holdout", workload=digits, precision="fp32")
    assert DEFAULT_PRECISION == "int8"
    assert fast.precision == "int8" and fast._int8 is not None
    assert fast.bn_images == FAST_BN_IMAGES
    assert full.precision == "fp32" and full._int8 is None
    assert full.bn_images == sum(b.shape[0] for b in full._bn)  # all calibration images
    with pytest.raises(ValueError, match="precision 'fp16'.*int8, fp32"):
        get_proxy("holdout", workload=digits, precision="fp16")
    # On the tiny model the two agree closely, policy by policy and in rank.
    from scipy.stats import kendalltau

    fast_scores, full_scores = [], []
    for density in (1.0, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05):
        masks = uniform_masks(digits, density) if density < 1 else {}
        fast_scores.append(fast.evaluate(masks))
        full_scores.append(full.evaluate(masks))
    assert max(abs(a - b) for a, b in zip(fast_scores, full_scores, strict=True)) <= 0.03
    assert kendalltau(fast_scores, full_scores)[0] >= 0.85
    # The full evaluation is exactly the one before int8 existed.
    assert full.evaluate({}) == get_proxy("holdout", workload=digits, precision="fp32").evaluate({})


def test_int8_falls_back_to_fp32_where_it_has_no_path(
    tiny_workload: Workload, residual_workload: Workload
) -> None:
    # A convolution without BatchNorm (tiny) and a residual add: scored in fp32.
    for w in (tiny_workload, residual_workload):
        proxy = get_proxy("holdout", workload=w)
        assert proxy.precision == "int8" and proxy._int8 is None
        full = get_proxy("holdout", workload=w, precision="fp32")
        assert proxy.evaluate({}) == pytest.approx(full.evaluate({}), abs=0.05)


def test_the_resolved_precision_is_recorded_in_the_search_config() -> None:
    from agents.app.search import SearchConfig

    config = SearchConfig()
    assert config.proxy == "holdout" and config.proxy_params == {"precision": "int8"}
    assert SearchConfig.from_dict(config.as_dict()).proxy_params == {"precision": "int8"}
    chosen = SearchConfig(proxy_params={"precision": "fp32"})
    assert chosen.proxy_params == {"precision": "fp32"}
    with pytest.raises(ValueError, match="unknown precision"):
        SearchConfig(proxy_params={"precision": "bf16"})


def test_racing_stops_scoring_a_clearly_worse_policy(
    digits: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    import envs.proxies.builtin as proxies

    # digits scores 300 holdout images: race after 128 of them here.
    monkeypatch.setattr(proxies, "RACE_MIN_IMAGES", 128)
    fast = get_proxy("holdout", workload=digits)
    assert fast.race == proxies.RACE_Z
    assert get_proxy("holdout", workload=digits, precision="fp32").race == 0.0
    n = int(fast._holdout_y.shape[0])
    # The dense network is no policy: scored in full, it sets no reference to race against.
    fast.evaluate({})
    assert fast.last_images == n and fast._best < 0
    good, bad = uniform_masks(digits, 0.6), uniform_masks(digits, 0.05)
    fast.evaluate(good)  # the first policy: no best to race against yet, all images
    assert fast.last_images == n and fast._best > 0.5
    raced = fast.evaluate(bad)
    assert 128 <= fast.last_images < n
    assert fast.evaluate(good) > fast._best - 0.05 and fast.last_images == n
    whole = get_proxy("holdout", workload=digits, race=0)
    whole.evaluate(good)
    full_score = whole.evaluate(bad)
    assert whole.last_images == n
    assert abs(raced - full_score) <= 0.1  # the accuracy on the images seen
    with pytest.raises(ValueError, match="race must be >= 0"):
        get_proxy("holdout", workload=digits, race=-1.0)
    # Scores from before (a resumed search's journal) set the reference as if measured.
    resumed = get_proxy("holdout", workload=digits)
    resumed.note_scores([0.2, fast._best, 0.5])
    assert resumed._best == fast._best
    resumed.evaluate(bad)
    assert resumed.last_images < n
    # A new search on the same proxy (a benchmark's next method) races only against its own.
    resumed.new_search()
    resumed.evaluate(bad)
    assert resumed.last_images == n


def test_finetune_distill_learns_from_the_dense_model(digits: Workload) -> None:
    masks = uniform_masks(digits, 0.2)
    plain = get_proxy("finetune", workload=digits, steps=15)
    distilled = get_proxy("finetune", workload=digits, steps=15, distill=True)
    plain.evaluate(masks)
    score = distilled.evaluate(masks)
    # A different objective (same batches), so different weights; deterministic; the
    # teacher is the workload's dense model, untouched.
    layer = next(iter(masks)).rpartition(".")[0]
    assert not torch.equal(
        distilled.model.get_submodule(layer).weight, plain.model.get_submodule(layer).weight
    )
    assert distilled.evaluate(masks) == pytest.approx(score, abs=1e-9)
    for name, p in digits.model.named_parameters():
        assert torch.equal(p, distilled.teacher.get_parameter(name)), name
    assert score > get_proxy("holdout", workload=digits).evaluate(masks) - 0.05
