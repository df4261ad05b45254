"""Workloads: a model plus its data splits, trained and cached on first use.

``get_workload(name, data=..., checkpoint=..., seed=..., device=...)`` returns a
:class:`envs.workloads.base.Workload`. Registered names:

- ``digits-cnn`` (the default): a six-conv VGG-style CNN on scikit-learn's bundled digits
  upsampled to 16x16; trained deterministically on first use (a few seconds on 2 CPU
  cores) and cached.
- ``resnet20``, ``resnet56``, ``vgg11-cifar``: CIFAR-style networks for 32x32 inputs.
- every torchvision classification model (``resnet18``, ``mobilenet_v2``, ``vgg16``,
  ``efficientnet_b0``...), always built with ``weights=None``: nothing is downloaded.

Data (``data=``): ``None``/``"digits"`` (bundled), ``"digits-aug"`` (distorted views of the
bundled digits: harder, with a 3,600-image test split), ``"synthetic"`` (generated, for
tests), a CIFAR-10 python directory or an ImageFolder directory. A ``checkpoint=FILE`` (a
state_dict, loaded with ``weights_only=True``) gives trained weights. Without one, a
model is trained with the cached deterministic recipe when that is cheap: bundled or
synthetic data and a small model (``resnet20`` on 32x32 digits qualifies, ``resnet56``
and big torchvision models do not). Otherwise the model keeps its random initial
weights and an :class:`UntrainedModelWarning` says so: fine for inspection, cost models
and speed measurements, meaningless for accuracy.

The cache lives in ``$HWPRUNE_CACHE``, else ``$XDG_CACHE_HOME/hwprune``, else
``~/.cache/hwprune``; a file's name carries a hash of the training recipe and the torch
version, so changing either retrains.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from envs.workloads.base import WORKLOADS, Workload
from envs.workloads.data import (
    BUILTIN_SOURCES,
    DATA_LAYOUTS,
    INSTALLED_SOURCES,
    SPLIT_SEED,
    Splits,
    fashion_mnist_dir,
    is_cifar10_dir,
    is_idx_dir,
    load_cifar10_splits,
    load_digits_aug_splits,
    load_digits_splits,
    load_idx_splits,
    load_imagefolder_splits,
    make_synthetic_splits,
)
from envs.workloads.evaluation import DEVICES, accuracy, finetune, resolve_device
from envs.workloads.models import (
    CIFAR_MODELS,
    FASHION_CNN_WIDTHS,
    TORCHVISION_INPUT_SIZE,
    DigitsCNN,
    FashionVGG,
    build_torchvision,
    torchvision_models,
)
from envs.workloads.safe_load import load_torch_file, torch_load_reason
from pruning.inspect import inspect_model

#: Bump when the training code changes in a way the recipe dict does not show.
RECIPE_VERSION = 1

#: Models above this many multiply-accumulates per image are not trained automatically.
MAX_TRAIN_MACS = 60_000_000

DEFAULT_WORKLOAD = "digits-cnn"


class UntrainedModelWarning(UserWarning):
    """A workload's model has random weights (no checkpoint, too costly to train here)."""


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of the deterministic training recipe (SGD, cosine schedule)."""

    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    hflip: bool = False
    """Random horizontal flips of half of every batch (for data whose classes are
    mirror-symmetric, like clothes; not for digits)."""
    crop: int = 0
    """Random shifts of every image by up to this many pixels (pad and crop)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for hashing and provenance); ``hflip`` and ``crop`` only when on, so
        that the recipes written before they existed keep their cache keys."""
        d = dict(vars(self))
        if not self.hflip:
            d.pop("hflip")
        if not self.crop:
            d.pop("crop")
        return d


@dataclass(frozen=True)
class _Arch:
    """How to build one registered architecture."""

    name: str
    build: Callable[[int, int], nn.Module]
    size: Callable[[str], int]
    """Input side length for a data kind (``digits``, ``synthetic``, ``cifar10``, ``folder``)."""
    channels: int | None = None
    """Fixed input channels (3 for torchvision); None = the data's own."""
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    family: str = "custom"
    default_data: str | None = None
    """Data source when ``data=None`` (``None``: the bundled digits)."""
    recipes: dict[str, TrainRecipe] = field(default_factory=dict)
    """Training recipe per data kind, where it differs from ``recipe``."""
    shipped: str | None = None
    """Name of a trained checkpoint committed under ``envs/workloads/checkpoints/`` (``NAME.pt`` and
    its record ``NAME.json``: recipe, sha256, test accuracy), loaded instead of training
    whenever the requested recipe is the recorded one."""


def cache_dir() -> Path:
    """Where trained workloads are cached (``$HWPRUNE_CACHE`` wins, then XDG, then ~)."""
    env = os.environ.get("HWPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hwprune"


def recipe_key(recipe: dict[str, Any]) -> str:
    """Cache key: hash of the recipe dict and the torch version (16 hex digits)."""
    blob = json.dumps(
        {"recipe": recipe, "torch": str(torch.__version__)}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Holdout images the proxies score by default, per data kind (others: the whole holdout).
#: Fashion-MNIST's holdout has 5,000 images; scoring all of them costs ~1.1 s per episode
#: on fashion-cnn (one core), 1,000 (0.1-point resolution) about a quarter of that.
SCORE_LIMITS: dict[str, int] = {"fashion-mnist": 1000, "idx": 1000}

#: Data kinds whose training is cheap enough to run automatically (for small models).
TRAINABLE_KINDS = (*BUILTIN_SOURCES, "fashion-mnist", "idx")


def _data_kind(data: str | Path | None) -> str:
    """The kind of a ``data=`` value; raises ``ValueError`` (before any loading) if unusable.

    Kinds: the built-in sources, ``fashion-mnist`` (installed; its absence is reported
    with how to install it), ``idx`` (a directory of (Fashion-)MNIST idx files),
    ``cifar10`` and ``folder`` (ImageFolder).
    """
    if data is None:
        return "digits"
    if str(data) in BUILTIN_SOURCES:
        return str(data)
    if str(data) in INSTALLED_SOURCES:
        fashion_mnist_dir()  # raises, saying how to install it, if it is absent
        return str(data)
    path = Path(data).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"data {str(data)!r} is neither a built-in source "
            f"({', '.join((*BUILTIN_SOURCES, *INSTALLED_SOURCES))}) nor an existing directory "
            "((Fashion-)MNIST idx files, CIFAR-10 python batches or an ImageFolder)"
        )
    if is_idx_dir(path):
        return "idx"
    if is_cifar10_dir(path):
        return "cifar10"
    if not any(p.is_dir() for p in path.iterdir()):  # not even an ImageFolder's classes
        raise ValueError(f"data directory {str(data)!r} holds none of {DATA_LAYOUTS}")
    return "folder"


def _load_splits(
    kind: str, data: str | Path | None, *, size: int, channels: int | None, default_c: int
) -> Splits:
    if kind == "digits":
        return load_digits_splits(size=size, channels=channels or 1)
    if kind == "digits-aug":
        return load_digits_aug_splits(size=size, channels=channels or 1)
    if kind == "synthetic":
        return make_synthetic_splits(input_shape=(channels or default_c, size, size))
    if kind == "fashion-mnist":
        return load_idx_splits(
            fashion_mnist_dir(), size=size, channels=channels or 1, name="fashion-mnist"
        )
    assert data is not None
    if kind == "idx":
        return load_idx_splits(data, size=size, channels=channels or 1)
    if channels not in (None, 3):
        raise ValueError(f"{kind} data has 3 channels; this model needs {channels}")
    if kind == "cifar10":
        return load_cifar10_splits(data, size=size)
    return load_imagefolder_splits(data, size=size)


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic, single-threaded; the caller's RNG and settings are restored.

    One thread: the result then does not depend on the machine's core count (reduction
    order), and small models train faster on one thread than on two contended ones (a
    measured 1 s vs 40 s for 3 digits-cnn epochs on a busy 2-core machine).
    """
    prev = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev)
            torch.set_num_threads(threads)


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temp file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Load a state_dict file into ``model`` (``weights_only=True``), strictly.

    Accepts a bare state_dict or a dict with a ``"state_dict"`` / ``"model"`` entry.
    Raises ``ValueError`` listing every shape mismatch (by parameter name), missing and
    unexpected key; BatchNorm ``num_batches_tracked`` counters may be absent.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ValueError(f"checkpoint file {str(path)!r} does not exist")
    try:
        state = load_torch_file(path)
    except Exception as exc:  # pickle errors, unsafe globals, truncated files
        raise ValueError(
            f"cannot load checkpoint {str(path)!r} as a state_dict: {torch_load_reason(exc)}"
        ) from exc
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {str(path)!r} is not a state_dict (name -> tensor)")
    own = model.state_dict()
    problems = []
    for k in own.keys() & state.keys():
        if tuple(own[k].shape) != tuple(state[k].shape):
            problems.append(
                f"shape mismatch at {k}: checkpoint {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)}"
            )
    missing = sorted(k for k in own.keys() - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:10]) + (f" (+{len(keys) - 10} more)" if len(keys) > 10 else "")

    if missing:
        problems.append(f"missing keys: {show(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {show(unexpected)}")
    if problems:
        raise ValueError(
            f"checkpoint {str(path)!r} does not fit model {type(model).__name__}: "
            + "; ".join(sorted(problems))
        )
    model.load_state_dict(state, strict=False)
    return model


def _macs(model: nn.Module, example: torch.Tensor) -> int:
    return sum(spec.macs for spec in inspect_model(model, example))


def _train(
    model: nn.Module, splits: Splits, recipe: TrainRecipe, seed: int, *, label: str = "model"
) -> None:
    """Train ``model`` by ``recipe``; a progress bar with an ETA goes to stderr when the
    training is long enough to be worth one (more than 2,000 steps)."""
    from tqdm import tqdm

    n = len(splits.train)
    steps = recipe.epochs * max(1, n // recipe.batch_size)
    bar = tqdm(
        total=steps,
        desc=f"training {label} ({recipe.epochs} epochs)",
        unit="step",
        disable=steps <= 2000 or os.environ.get("HWPRUNE_NO_PROGRESS") == "1",
    )
    with bar:
        _finetune_recipe(model, splits, recipe, seed, steps, on_step=lambda _s: bar.update())


def _finetune_recipe(
    model: nn.Module,
    splits: Splits,
    recipe: TrainRecipe,
    seed: int,
    steps: int,
    on_step: Callable[[int], None] | None = None,
) -> None:
    finetune(
        model,
        splits.train,
        steps=steps,
        lr=recipe.lr,
        batch_size=recipe.batch_size,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        schedule="cosine",
        label_smoothing=recipe.label_smoothing,
        hflip=recipe.hflip,
        crop=recipe.crop,
        seed=seed,
        device="cpu",
        on_step=on_step,
    )


def _build_workload(
    arch: _Arch,
    *,
    data: str | Path | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    image_size: int | None = None,
    train: bool | None = None,
    retrain: bool = False,
) -> Workload:
    # Validate every argument before any long work (data loading, training).
    if data is None:
        data = arch.default_data
    kind = _data_kind(data)
    dev = resolve_device(device)
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size}")
    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise ValueError(f"checkpoint file {str(checkpoint)!r} does not exist")
    size = image_size or arch.size(kind)
    splits = _load_splits(kind, data, size=size, channels=arch.channels, default_c=3)
    with _deterministic(seed):
        model = arch.build(splits.input_shape[0], splits.num_classes)
    example = splits.holdout[0][0].unsqueeze(0)
    recipe = arch.recipes.get(kind, arch.recipe)
    if kind == "synthetic":  # learnable in a few epochs; keeps tests fast
        recipe = TrainRecipe(epochs=min(recipe.epochs, 5), lr=recipe.lr)
    meta: dict[str, Any] = {
        "architecture": arch.name,
        "family": arch.family,
        "data": splits.source,
        "input_shape": list(splits.input_shape),
        "device": str(dev),
        "seed": seed,
    }
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        meta.update(trained=True, checkpoint=str(Path(checkpoint).expanduser().resolve()))
    else:
        macs = _macs(model, example)
        meta["macs"] = macs
        if train is None:
            cheap = kind in TRAINABLE_KINDS and macs <= MAX_TRAIN_MACS
            reason = (
                f"training it here is too costly ({macs / 1e6:.0f} MMACs per image, "
                f"max {MAX_TRAIN_MACS / 1e6:.0f}; or data that is not bundled)"
            )
            train = cheap
        else:
            reason = "train=False"
        if train:
            recipe_dict = {
                "version": RECIPE_VERSION,
                "architecture": arch.name,
                # The module tree: a changed architecture must not load old weights.
                "structure": hashlib.sha256(repr(model).encode()).hexdigest()[:16],
                "data": splits.source,
                "input_shape": list(splits.input_shape),
                "num_classes": splits.num_classes,
                "split_seed": SPLIT_SEED,
                "split_sizes": [len(splits.train), len(splits.holdout), len(splits.test)],
                "seed": seed,
                **recipe.to_dict(),
            }
            meta.update(
                _trained_weights(
                    model, splits, recipe, recipe_dict, seed, shipped=arch.shipped, retrain=retrain
                )
            )
        else:
            warnings.warn(
                f"workload {arch.name!r} on {splits.source}: no checkpoint given and "
                f"{reason}: the model has RANDOM weights. Fine for inspection, cost and speed; "
                "pass checkpoint=FILE (or train=True) for meaningful accuracy.",
                UntrainedModelWarning,
                stacklevel=3,
            )
            meta["trained"] = False
    model.eval()
    return Workload(
        name=arch.name,
        model=model,
        example_input=example,
        train=splits.train,
        holdout=splits.holdout,
        test=splits.test,
        num_classes=splits.num_classes,
        meta=meta,
        score_limit=SCORE_LIMITS.get(kind),
    )


#: Where committed checkpoints live (a workload's cache, seeded in the repository).
CHECKPOINT_DIR = Path(__file__).with_name("checkpoints")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_record(name: str) -> dict[str, Any]:
    """The record of committed checkpoint ``name`` (``envs/workloads/checkpoints/NAME.json``)."""
    return json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())


def load_shipped(model: nn.Module, name: str, *, directory: Path | None = None) -> dict[str, Any]:
    """Load committed checkpoint ``name`` into ``model`` after checking its sha256.

    ``ValueError`` naming both digests when the file's sha256 is not the recorded one (a
    corrupt or replaced file is never loaded); the weights load with ``weights_only=True``.
    Returns the workload meta the checkpoint was recorded with.
    """
    where = CHECKPOINT_DIR if directory is None else directory
    record = json.loads((where / f"{name}.json").read_text())
    path = where / record["file"]
    if not path.is_file():
        raise ValueError(f"committed checkpoint {str(path)!r} is missing; reinstall hwprune")
    actual = file_sha256(path)
    if actual != record["sha256"]:
        raise ValueError(
            f"checkpoint {str(path)!r} has sha256 {actual}, but its record says "
            f"{record['sha256']}: the file is corrupt or was replaced; restore it "
            "(git checkout) or retrain with `hwprune train " + name + " --retrain`"
        )
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["state_dict"])
    return {**blob["meta"], "checkpoint_file": str(path), "sha256": actual, "shipped": True}


def _trained_weights(
    model: nn.Module,
    splits: Splits,
    recipe: TrainRecipe,
    recipe_dict: dict[str, Any],
    seed: int,
    *,
    shipped: str | None = None,
    retrain: bool = False,
) -> dict[str, Any]:
    """Load committed or cached weights for ``recipe_dict``, or train and cache them.

    A committed checkpoint (``shipped``) whose recorded recipe is ``recipe_dict`` comes
    first, then the cache; ``retrain`` skips both (the result replaces the cache entry).
    Returns the meta.
    """
    key = recipe_key(recipe_dict)
    path = cache_dir() / "workloads" / f"{recipe_dict['architecture']}-{key}.pt"
    if (
        not retrain
        and shipped is not None
        and (CHECKPOINT_DIR / f"{shipped}.json").is_file()
        and shipped_record(shipped)["recipe"] == recipe_dict
    ):
        return load_shipped(model, shipped)
    if path.is_file() and not retrain:
        try:
            blob = load_torch_file(path)
            model.load_state_dict(blob["state_dict"])
            return {**blob["meta"], "cache_file": str(path), "from_cache": True}
        except Exception as exc:  # a corrupt or foreign file: retrain and overwrite it
            warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=3)
    steps = recipe.epochs * max(1, len(splits.train) // recipe.batch_size)
    print(
        f"training {recipe_dict['architecture']} on {splits.source} "
        f"({recipe.epochs} epochs, {steps} steps): "
        + ("retraining as asked" if retrain else "no trained weights cached for this recipe")
        + f"; cached afterwards in {path}",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    with _deterministic(seed):
        _train(model, splits, recipe, seed, label=recipe_dict["architecture"])
    seconds = time.perf_counter() - t0
    meta = {
        "trained": True,
        "recipe": recipe_dict,
        "cache_key": key,
        "torch_version": str(torch.__version__),
        "train_seconds": round(seconds, 2),
        "test_accuracy": accuracy(model, splits.test),
        "holdout_accuracy": accuracy(model, splits.holdout),
    }
    _atomic_save({"state_dict": model.state_dict(), "meta": meta}, path)
    return {**meta, "cache_file": str(path), "from_cache": False}


def get_workload(
    name: str = DEFAULT_WORKLOAD,
    *,
    data: str | Path | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    image_size: int | None = None,
    train: bool | None = None,
    retrain: bool = False,
) -> Workload:
    """Build workload ``name`` (see the module docstring for names, data and training).

    Args:
        name: a registered workload (``list_workloads()``); unknown names raise KeyError.
        data: ``None``/``"digits"``, ``"digits-aug"``, ``"synthetic"``, or a CIFAR-10 /
            ImageFolder directory.
        checkpoint: a state_dict file with trained weights for this model and data.
        seed: seed of the model's initialisation and training (the splits are fixed).
        device: where proxies evaluate (``"auto"``, ``"cpu"``, ``"cuda"``); recorded in
            ``meta["device"]``. The returned model itself stays on CPU, and training
            always runs on CPU so cached weights are the same everywhere.
        image_size: input side length (default: the architecture's, e.g. 16 for
            digits-cnn, 32 for CIFAR nets, 224 for torchvision models).
        train: train without a checkpoint? ``None`` = only when cheap (bundled or
            synthetic data and a small model); ``True`` forces it (may be slow);
            ``False`` keeps random weights.
        retrain: train by the recipe even when a committed checkpoint or the cache holds
            its weights (the new weights replace the cache entry; implies ``train``).

    Without a checkpoint, a big torchvision model is returned untrained (random weights,
    with an :class:`UntrainedModelWarning`): usable for inspection, cost and speed, not
    for accuracy.
    """
    WORKLOADS.check(name)
    if device not in DEVICES and not str(device).startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; valid choices: {', '.join(DEVICES)}")
    return WORKLOADS.build(
        name,
        data=data,
        checkpoint=checkpoint,
        seed=seed,
        device=device,
        image_size=image_size,
        train=True if retrain else train,
        retrain=retrain,
    )


def list_workloads() -> list[str]:
    """Names of all registered workloads (digits-cnn first)."""
    return WORKLOADS.names()


#: The architectures registered here, by workload name.
_ARCHS: dict[str, _Arch] = {}


def _register(arch: _Arch, help: str) -> None:
    def factory(**kwargs: Any) -> Workload:
        return _build_workload(arch, **kwargs)

    WORKLOADS.register(arch.name, factory, help=help)
    _ARCHS[arch.name] = arch


@functools.cache
def parameter_count(name: str) -> int | None:
    """Parameters of registered workload ``name``'s network (ten classes, its own input
    channels), counted on an untrained instance: no data, no checkpoint. None for a
    workload registered elsewhere (``WORKLOADS.register``), whose network is unknown here."""
    arch = _ARCHS.get(name)
    if arch is None:
        return None
    model = arch.build(arch.channels or 1, 10)
    return sum(p.numel() for p in model.parameters())


#: Native side length of the (Fashion-)MNIST idx sources: their nets run at 28x28.
IDX_SIZE = 28
_IDX_KINDS = ("fashion-mnist", "idx")
#: Fashion-MNIST recipes: SGD with flips (clothes are mirror-symmetric), cosine schedule.
FASHION_RECIPE = TrainRecipe(epochs=10, lr=0.05, batch_size=128, hflip=True)
#: fashion-vgg: flips and 2-pixel shifts, label smoothing, 30 epochs (its committed
#: checkpoint's recipe: 93.57% test; 20 epochs without smoothing reached 93.16%).
FASHION_VGG_RECIPE = TrainRecipe(
    epochs=30, lr=0.05, batch_size=128, label_smoothing=0.1, hflip=True, crop=2
)
RESNET20_FASHION_RECIPE = TrainRecipe(epochs=8, lr=0.1, batch_size=128, hflip=True)


def _side(kind: str, default: int) -> int:
    return IDX_SIZE if kind in _IDX_KINDS else default


_register(
    _Arch(
        name="digits-cnn",
        build=lambda c, k: DigitsCNN(in_channels=c, num_classes=k),
        size=lambda kind: {"digits": 16, "digits-aug": 16, "synthetic": 16}.get(kind, 32),
        recipe=TrainRecipe(epochs=30, lr=0.05),
    ),
    "six-conv VGG-style CNN on the bundled 8x8 digits upsampled to 16x16 (default)",
)
_register(
    _Arch(
        name="fashion-cnn",
        build=lambda c, k: DigitsCNN(in_channels=c, num_classes=k, widths=FASHION_CNN_WIDTHS),
        size=lambda kind: _side(kind, 32),
        recipe=FASHION_RECIPE,
        default_data="fashion-mnist",
    ),
    "six-conv VGG-style CNN, twice digits-cnn's width, on Fashion-MNIST (28x28)",
)
_register(
    _Arch(
        name="fashion-vgg",
        build=lambda c, k: FashionVGG(in_channels=c, num_classes=k),
        size=lambda kind: _side(kind, 32),
        recipe=FASHION_VGG_RECIPE,
        default_data="fashion-mnist",
        shipped="fashion-vgg",
    ),
    "VGG-11 layout with BatchNorm, 1.17 M parameters, on Fashion-MNIST (28x28): "
    "over-parameterised, for paper-grade compression; a trained checkpoint ships",
)
#: CIFAR-style nets: name -> (recipe, help). Only resnet20 is cheap enough to auto-train.
_CIFAR_HELP = {
    "resnet20": (
        TrainRecipe(epochs=6, lr=0.1),
        "CIFAR ResNet-20 (32x32 inputs; 28x28 on Fashion-MNIST); trained on digits upsampled "
        "to 32x32 by default",
    ),
    "resnet56": (
        TrainRecipe(epochs=12, lr=0.1),
        "CIFAR ResNet-56 (32x32 inputs, AMC's CIFAR-10 benchmark); needs a checkpoint",
    ),
    "vgg11-cifar": (
        TrainRecipe(epochs=12, lr=0.05),
        "VGG-11 with BatchNorm for 32x32 inputs; needs a checkpoint",
    ),
}
for _name, (_recipe, _help) in _CIFAR_HELP.items():
    _register(
        _Arch(
            name=_name,
            build=CIFAR_MODELS[_name],
            size=lambda kind: _side(kind, 32),
            recipe=_recipe,
            recipes={k: RESNET20_FASHION_RECIPE for k in _IDX_KINDS} if _name == "resnet20" else {},
            family="cifar",
        ),
        _help,
    )
for _tv in torchvision_models():
    _register(
        _Arch(
            name=_tv,
            build=lambda c, k, _n=_tv: build_torchvision(_n, num_classes=k),
            size=lambda kind, _n=_tv: TORCHVISION_INPUT_SIZE.get(_n, 224),
            channels=3,
            recipe=TrainRecipe(epochs=12, lr=0.05),
            family="torchvision",
        ),
        f"torchvision {_tv} (weights=None; random weights unless a checkpoint is given)",
    )
