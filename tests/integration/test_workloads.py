"""Workloads: the embedded digits-cnn, caching, checkpoints, other models and data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from envs.workloads.base import Workload
from envs.workloads.builtin import (
    UntrainedModelWarning,
    cache_dir,
    get_workload,
    list_workloads,
    load_checkpoint,
    recipe_key,
)
from envs.workloads.evaluation import accuracy


def test_digits_cnn_is_trained_and_accurate(digits: Workload) -> None:
    assert digits.meta["trained"] is True
    assert not digits.model.training
    convs = [m for m in digits.model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in digits.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) >= 6 and len(bns) == len(convs)
    assert isinstance(list(digits.model.modules())[-1], nn.Linear)
    assert tuple(digits.example_input.shape) == (1, 1, 16, 16)
    # Measured here, not read from the cache's metadata.
    assert accuracy(digits.model, digits.test) >= 0.97
    assert (len(digits.train), len(digits.holdout), len(digits.test)) == (1137, 300, 360)
    assert digits.num_classes == 10


def test_splits_are_disjoint_and_stratified(digits: Workload) -> None:
    def rows(ds) -> set[bytes]:
        return {ds.images[i].numpy().tobytes() + bytes([int(ds.labels[i])]) for i in range(len(ds))}

    tr, ho, te = rows(digits.train), rows(digits.holdout), rows(digits.test)
    # The digits data has a handful of duplicate images; overlaps must stay at that level.
    assert len(tr & ho) <= 3 and len(tr & te) <= 3
    counts = np.bincount(digits.holdout.labels.numpy(), minlength=10)
    assert counts.min() >= 28 and counts.max() <= 32


def test_second_call_loads_identical_weights_from_cache(digits: Workload) -> None:
    again = get_workload("digits-cnn")
    assert again.meta["from_cache"] is True
    assert Path(again.meta["cache_file"]).is_file()
    for (k, a), b in zip(
        digits.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_training_is_deterministic_and_cache_is_atomic(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "a"))
    a = get_workload("digits-cnn", data="synthetic")
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "b"))
    b = get_workload("digits-cnn", data="synthetic")
    assert a.meta["from_cache"] is False and b.meta["from_cache"] is False
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
    assert accuracy(a.model, a.test) > 0.9  # synthetic data is learnable
    files = sorted(p.name for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 1 and files[0].endswith(".pt"), files
    # A different seed is a different recipe, so a different cache entry.
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "a"))
    c = get_workload("digits-cnn", data="synthetic", seed=1)
    assert c.meta["cache_key"] != a.meta["cache_key"]


def test_cache_dir_and_key(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("HWPRUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "hwprune"
    assert recipe_key({"epochs": 1}) != recipe_key({"epochs": 2})
    assert recipe_key({"a": 1, "b": 2}) == recipe_key({"b": 2, "a": 1})


def test_bad_arguments_raise_before_work() -> None:
    with pytest.raises(KeyError, match="digits-cnn"):
        get_workload("digits-cnm")
    with pytest.raises(ValueError, match="neither a built-in source"):
        get_workload("digits-cnn", data="/no/such/dir")
    with pytest.raises(ValueError, match="valid choices"):
        get_workload("digits-cnn", device="tpu")
    with pytest.raises(ValueError, match="does not exist"):
        get_workload("digits-cnn", checkpoint="/no/such/file.pt")


def test_registry_lists_every_torchvision_model() -> None:
    import torchvision

    names = list_workloads()
    assert names[0] == "digits-cnn"
    assert {"resnet20", "resnet56", "vgg11-cifar"} <= set(names)
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(names)


def test_checkpoint_roundtrip_and_mismatch_report(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "cache"))
    src = get_workload("digits-cnn", data="synthetic", train=False)
    with torch.no_grad():
        for p in src.model.parameters():
            p.add_(1.0)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": src.model.state_dict()}, good)
    loaded = get_workload("digits-cnn", data="synthetic", checkpoint=good)
    assert loaded.meta["checkpoint"] == str(good.resolve())
    for (k, a), b in zip(
        src.model.state_dict().items(), loaded.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k

    state = dict(src.model.state_dict())
    state["classifier.weight"] = torch.zeros(3, state["classifier.weight"].shape[1])
    state.pop("features.0.weight")
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"shape mismatch at classifier\.weight") as err:
        get_workload("digits-cnn", data="synthetic", checkpoint=bad)
    assert "missing keys: features.0.weight" in str(err.value)
    assert "unexpected keys: extra.weight" in str(err.value)

    notstate = tmp_path / "list.pt"
    torch.save([1, 2], notstate)
    with pytest.raises(ValueError, match="not a state_dict"):
        load_checkpoint(src.model, notstate)


def test_big_torchvision_model_is_untrained_and_warned(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path))
    with pytest.warns(UntrainedModelWarning, match="RANDOM weights"):
        w = get_workload("resnet18", data="synthetic", image_size=64)
    assert w.meta["trained"] is False
    assert tuple(w.example_input.shape) == (1, 3, 64, 64)
    assert w.model(w.example_input).shape == (1, 10)


def test_digits_aug_is_a_builtin_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path))
    with pytest.warns(UntrainedModelWarning, match="train=False"):
        w = get_workload("digits-cnn", data="digits-aug", train=False)
    assert w.meta["data"].startswith("digits-aug")
    assert [len(s) for s in (w.train, w.holdout, w.test)] == [6 * 1137, 2 * 300, 10 * 360]
    assert tuple(w.example_input.shape) == (1, 1, 16, 16)


def test_digits_are_replicated_for_three_channel_models(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path))
    w = get_workload("mobilenet_v2", image_size=32, train=False)
    x, _ = w.holdout[0]
    assert tuple(x.shape) == (3, 32, 32) and torch.equal(x[0], x[1])


def _write_cifar(root: Path, per_batch: int = 40) -> None:
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        blob = {
            "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            "labels": [i % 10 for i in range(per_batch)],
        }
        with open(root / name, "wb") as fh:
            pickle.dump(blob, fh)


def test_cifar10_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "cache"))
    _write_cifar(tmp_path / "cifar")
    with pytest.warns(UntrainedModelWarning):
        w = get_workload("resnet20", data=tmp_path / "cifar")
    assert (len(w.train), len(w.holdout), len(w.test)) == (180, 20, 40)
    assert w.meta["data"].startswith("cifar10:")
    assert tuple(w.example_input.shape) == (1, 3, 32, 32)


def test_imagefolder_directory(tmp_path, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            arr = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "imgs" / cls / f"{i}.png")
    w = get_workload("digits-cnn", data=tmp_path / "imgs", train=False, image_size=16)
    assert w.num_classes == 2
    assert (len(w.train), len(w.holdout), len(w.test)) == (14, 2, 4)
    x, y = w.train[0]
    assert tuple(x.shape) == (3, 16, 16) and y in (0, 1)
    assert 0.0 <= accuracy(w.model, w.test) <= 1.0


def test_fashion_cnn_on_an_idx_directory(tmp_path, monkeypatch) -> None:
    """An idx directory is a data source: fashion-cnn trains on it (cheap kind), runs at the
    native 28x28, and its proxies score at most the workload's score_limit images."""
    from envs import get_proxy
    from envs.workloads.builtin import SCORE_LIMITS
    from tests.conftest import write_idx_dir

    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path / "cache"))
    write_idx_dir(tmp_path / "fm", gz=True, n_train=1200, n_test=30)
    w = get_workload("fashion-cnn", data=tmp_path / "fm")
    assert w.meta["trained"] is True and w.meta["data"].startswith("idx:")
    assert w.meta["recipe"]["hflip"] is True  # clothes are mirror-symmetric
    assert (len(w.train), len(w.holdout), len(w.test)) == (1080, 120, 30)
    assert tuple(w.example_input.shape) == (1, 1, 28, 28)
    assert w.score_limit == SCORE_LIMITS["idx"] == 1000
    proxy = get_proxy("holdout", workload=w)
    assert proxy._holdout[1].shape[0] == min(1000, len(w.holdout))
    assert get_proxy("holdout", workload=w, holdout_limit=50)._holdout[1].shape[0] == 50
    with pytest.warns(UntrainedModelWarning, match="train=False"):
        r = get_workload("resnet20", data=tmp_path / "fm", train=False)
    assert tuple(r.example_input.shape) == (1, 1, 28, 28)
