"""Datasets for workloads: bundled digits (plain or distorted), Fashion-MNIST, CIFAR-10,
ImageFolders, synthetic.

Every source is split the same way: a fixed, stratified test split (the source's own
test split where it has one), and a *search-holdout* split carved out of the training
data. The network is trained on ``train`` only, so the holdout is unseen data the search
reward can be scored on; ``test`` is only for final reports.

In-memory sources are :class:`ImageSplit` objects: they keep the images at their native
resolution (digits are 8x8) and resize, replicate channels and normalise per batch, so a
224x224 view of the digits costs no memory until a batch is asked for.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

#: Seed of every split (fixed: a search's holdout must be the same in every run).
SPLIT_SEED = 0

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Names ``data=`` accepts besides a directory path.
BUILTIN_SOURCES = ("digits", "digits-aug", "synthetic")
#: Sources installed on the machine rather than bundled (``fashion_mnist_dir`` finds it).
INSTALLED_SOURCES = ("fashion-mnist",)


class ImageSplit(Dataset):
    """An in-memory image split, resized/normalised on access.

    Args:
        images: ``(N, C, h, w)`` tensor at native resolution, values in [0, 1] (float) or
            [0, 255] (uint8).
        labels: ``(N,)`` int64 class indices.
        size: output ``(H, W)``; bilinear interpolation when it differs from ``(h, w)``.
        channels: output channels; a 1-channel source is replicated to 3 if asked.
        mean, std: per-output-channel normalisation constants.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        size: tuple[int, int],
        channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        if images.dim() != 4 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images must be (N, C, H, W) with N = len(labels); got {tuple(images.shape)} "
                f"and {tuple(labels.shape)}"
            )
        src_c = int(images.shape[1])
        if channels != src_c and src_c != 1:
            raise ValueError(f"cannot turn {src_c}-channel images into {channels} channels")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values, got {len(mean)}/{len(std)}")
        self.images = images
        self.labels = labels.long()
        self.size = (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([index]))
        return x[0], int(y[0])

    def batch(self, indices: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Processed ``(images, labels)`` for ``indices``, vectorised."""
        x = self.images[indices]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous(), self.labels[indices]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one processed image."""
        return (self.channels, *self.size)

    def preprocessing(self) -> dict[str, Any]:
        """How a raw image becomes the network's input (what ``batch`` does), as data.

        Recorded in exports and MLflow models, so that a deployed model takes images
        as the dataset stores them: ``raw_shape`` ``(C, h, w)`` and ``raw_dtype`` of those.
        """
        return {
            "raw_shape": list(self.images.shape[1:]),
            "raw_dtype": str(self.images.dtype).removeprefix("torch."),
            "scale": "uint8 / 255" if self.images.dtype == torch.uint8 else "floats in [0, 1]",
            "size": list(self.size),
            "resize": "bilinear, align_corners=False",
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def raw(self, n: int) -> np.ndarray:
        """The first ``n`` images as stored (before preprocessing), as numpy."""
        return self.images[:n].numpy()

    @property
    def num_classes(self) -> int:
        """Number of classes (max label + 1)."""
        return int(self.labels.max()) + 1 if len(self) else 0


@dataclass
class Splits:
    """The three splits of a data source, and what produced them."""

    train: Dataset
    holdout: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, int, int]
    source: str
    """Provenance string (``"digits"``, ``"cifar10:/path"``...), part of cache keys."""


def stratified_split(
    labels: np.ndarray, *, size: int | float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, taken)`` with ``taken`` a stratified sample of ``size`` items."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, taken = train_test_split(idx, test_size=size, stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(taken)


def _make_splits(
    images: torch.Tensor,
    labels: torch.Tensor,
    train_idx: np.ndarray,
    holdout_idx: np.ndarray,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    size: tuple[int, int],
    channels: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    source: str,
) -> Splits:
    def mk(x: torch.Tensor, y: torch.Tensor) -> ImageSplit:
        return ImageSplit(x, y, size=size, channels=channels, mean=mean, std=std)

    ti, hi = torch.from_numpy(train_idx), torch.from_numpy(holdout_idx)
    train = mk(images[ti], labels[ti])
    return Splits(
        train=train,
        holdout=mk(images[hi], labels[hi]),
        test=mk(test_images, test_labels),
        num_classes=int(max(labels.max(), test_labels.max())) + 1,
        input_shape=train.input_shape,
        source=source,
    )


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


#: Test and search-holdout glyphs of the bundled digits (the rest, 1,137, train).
DIGITS_TEST_SIZE = 360
DIGITS_HOLDOUT_SIZE = 300


def _digits_split_indices(
    labels: np.ndarray, *, test_size: int, holdout_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, holdout, test) of the bundled digits: stratified, seed SPLIT_SEED."""
    trainval, test = stratified_split(labels, size=test_size)
    tr, ho = stratified_split(labels[trainval], size=holdout_size)
    return trainval[tr], trainval[ho], test


def load_digits_splits(
    *,
    size: int = 16,
    channels: int = 1,
    test_size: int = DIGITS_TEST_SIZE,
    holdout_size: int = DIGITS_HOLDOUT_SIZE,
) -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images), upsampled to ``size``.

    Splits (stratified, seed :data:`SPLIT_SEED`): ``test_size`` test images; of the rest,
    ``holdout_size`` form the search holdout and the others (1,137 by default) the
    training split. Normalised with the training split's mean and std. Nothing is
    downloaded: the data ships with scikit-learn.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    tr, ho, test = _digits_split_indices(
        bunch.target, test_size=test_size, holdout_size=holdout_size
    )
    mean, std = _channel_stats(x[torch.from_numpy(tr)])
    t = torch.from_numpy(test)
    return _make_splits(
        x,
        y,
        tr,
        ho,
        x[t],
        y[t],
        size=(size, size),
        channels=channels,
        mean=mean * channels,
        std=std * channels,
        source="digits",
    )


def _distort(
    images: torch.Tensor,
    copies: int,
    *,
    max_rotation: float,
    max_shift: float,
    scale: tuple[float, float],
    noise: float,
    seed: int,
) -> torch.Tensor:
    """``copies`` random affine views of every image (rotation, scale, shift) plus noise.

    Copy ``k`` of image ``i`` is row ``k * len(images) + i``. ``max_shift`` is a fraction of
    the image side; pixels moved in from outside the image are 0 (background).
    """
    g = torch.Generator().manual_seed(seed)
    x = images.repeat(copies, 1, 1, 1)
    n = x.shape[0]
    angle = (torch.rand(n, generator=g) * 2 - 1) * np.deg2rad(max_rotation)
    zoom = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=g)
    # affine_grid works in [-1, 1] coordinates: a shift of f of the side is 2 * f.
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * 2 * max_shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return out + noise * torch.randn(out.shape, generator=g)


def load_digits_aug_splits(
    *,
    size: int = 16,
    channels: int = 1,
    copies: tuple[int, int, int] = (6, 2, 10),
    max_rotation: float = 15.0,
    max_shift: float = 0.125,
    scale: tuple[float, float] = (0.85, 1.15),
    noise: float = 0.15,
) -> Splits:
    """A harder digits source, generated from the bundled one: distorted views of every glyph.

    The glyphs are split exactly as in :func:`load_digits_splits` (so no test glyph is
    ever trained on), upsampled to 16x16, and each split is drawn ``copies`` = (train,
    holdout, test) times under a random rotation (up to ``max_rotation`` degrees), scale
    and shift (up to ``max_shift`` of the side) plus Gaussian pixel noise of std
    ``noise`` (pixels in [0, 1]). Deterministic. With the defaults: 6,822 training, 600
    holdout and 3,600 test images. The digits CNN reaches 97.9% (plain digits: 99.4%,
    which pruned and fine-tuned networks nearly match); pruned to 0.35-0.5 of its latency
    and fine-tuned, it lands between 72% and 97%. A test image is 0.03 points (plain
    digits: 0.28), so the test split can tell close policies apart.
    """
    from sklearn.datasets import load_digits

    if len(copies) != 3 or min(copies) < 1:
        raise ValueError(
            f"copies must be three positive counts (train, holdout, test), got {copies}"
        )
    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    tr, ho, test = _digits_split_indices(
        bunch.target, test_size=DIGITS_TEST_SIZE, holdout_size=DIGITS_HOLDOUT_SIZE
    )
    splits = {}
    parts = (("train", tr), ("holdout", ho), ("test", test))
    for seed, ((name, idx), k) in enumerate(zip(parts, copies, strict=True), start=1):
        t = torch.from_numpy(idx)
        views = _distort(
            x[t],
            k,
            max_rotation=max_rotation,
            max_shift=max_shift,
            scale=scale,
            noise=noise,
            seed=SPLIT_SEED + seed,
        )
        splits[name] = (views, y[t].repeat(k))
    mean, std = _channel_stats(splits["train"][0])

    def mk(name: str) -> ImageSplit:
        images, labels = splits[name]
        return ImageSplit(
            images,
            labels,
            size=(size, size),
            channels=channels,
            mean=mean * channels,
            std=std * channels,
        )

    train = mk("train")
    return Splits(
        train=train,
        holdout=mk("holdout"),
        test=mk("test"),
        num_classes=10,
        input_shape=train.input_shape,
        # The generation settings are part of the provenance (and so of the cache key).
        source=f"digits-aug:{copies}:{max_rotation}:{max_shift}:{scale}:{noise}",
    )


#: Where Debian's ``dataset-fashion-mnist`` package installs the four idx files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The four files of (Fashion-)MNIST, each optionally gzipped.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: Every directory layout ``--data DIR`` reads, for messages about one it cannot.
DATA_LAYOUTS = (
    "the four (Fashion-)MNIST idx files ("
    + ", ".join(IDX_FILES.values())
    + ", gzipped or not), CIFAR-10 python batches (data_batch_1..data_batch_5 and "
    "test_batch) or an ImageFolder (a sub-directory of images per class, or train/ and "
    "test/ or val/ directories of them)"
)
#: Search-holdout images carved (stratified) out of Fashion-MNIST's 60,000 training images.
FASHION_HOLDOUT_SIZE = 5000
# The idx format's type codes (third byte of the magic number) this reader accepts.
_IDX_UBYTE = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format, gzipped or not) as a uint8 array.

    The header is a big-endian magic number ``0x0000 08 D`` (unsigned bytes, ``D``
    dimensions) followed by ``D`` big-endian int32 sizes. Raises ``ValueError`` naming the
    file for a bad magic number, a type other than unsigned bytes, or a file shorter or
    longer than its header says.
    """
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError) as exc:  # gzip's "not a gzipped file", truncated streams
        raise ValueError(f"cannot read idx file {str(p)!r}: {exc}") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise ValueError(
            f"{str(p)!r} is not an idx file: bad magic number {blob[:4].hex() or '(empty)'}"
            " (expected 0x000008NN)"
        )
    if blob[2] != _IDX_UBYTE:
        raise ValueError(
            f"{str(p)!r}: idx type 0x{blob[2]:02x} is not supported (only unsigned bytes, 0x08)"
        )
    ndim = blob[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(blob) < header:
        raise ValueError(f"{str(p)!r} is truncated: its header needs {header} bytes")
    shape = tuple(int(d) for d in np.frombuffer(blob, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(blob) != expected:
        raise ValueError(
            f"{str(p)!r} is truncated or corrupt: {len(blob)} bytes, its header "
            f"{shape} needs {expected}"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def is_idx_dir(path: Path) -> bool:
    """Whether ``path`` holds the four (Fashion-)MNIST idx files, gzipped or not."""
    return all(_idx_path(path, stem) is not None for stem in IDX_FILES.values())


def fashion_mnist_dir() -> Path:
    """The installed Fashion-MNIST directory (``$HWPRUNE_FASHION_MNIST``, else Debian's).

    Raises ``ValueError`` saying how to get the data when it is not there.
    """
    env = os.environ.get("HWPRUNE_FASHION_MNIST")
    root = Path(env).expanduser() if env else FASHION_MNIST_DIR
    if not is_idx_dir(root):
        files = ", ".join(f"{s}[.gz]" for s in IDX_FILES.values())
        raise ValueError(
            f"Fashion-MNIST is not installed in {str(root)!r}: install it with "
            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu, as root), or put the "
            f"four idx files ({files}) in a directory and pass --data DIR"
        )
    return root


def load_idx_splits(
    path: str | Path,
    *,
    size: int = 28,
    channels: int = 1,
    holdout_size: int | None = None,
    name: str = "idx",
) -> Splits:
    """(Fashion-)MNIST from a directory of its four idx files, gzipped or not.

    The source's own 10,000 test images are the test split; ``holdout_size`` training
    images (stratified, seed :data:`SPLIT_SEED`; default 5,000 as in AMC, at most a tenth
    of the training data) form the search holdout and the rest (55,000) the training
    split. Normalised with the training split's mean and std. Images stay uint8 in memory
    (47 MB for all 70,000). The provenance string is ``name`` plus a hash of the labels
    and test images, so trained weights are cached by content, whichever directory the
    files come from.
    """
    root = Path(path).expanduser()
    if not is_idx_dir(root):
        missing = [s for s in IDX_FILES.values() if _idx_path(root, s) is None]
        raise ValueError(
            f"{str(root)!r} lacks the idx file(s) {', '.join(missing)} (gzipped or not)"
        )
    arrays = {k: read_idx(_idx_path(root, stem)) for k, stem in IDX_FILES.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{str(root)!r}: {split} images {images.shape} and labels {labels.shape} do "
                "not match (expected (N, H, W) and (N,))"
            )
    digest = hashlib.sha256()
    for key in ("train_labels", "test_labels", "test_images"):
        digest.update(arrays[key].tobytes())
    content_hash = digest.hexdigest()[:12]
    x = torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1)
    y = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    xt = torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1)
    yt = torch.from_numpy(arrays["test_labels"].astype(np.int64))
    if holdout_size is None:
        holdout_size = min(FASHION_HOLDOUT_SIZE, len(y) // 10)
    tr, ho = stratified_split(y.numpy(), size=holdout_size)
    mean, std = _channel_stats(x[torch.from_numpy(tr)])
    return _make_splits(
        x,
        y,
        tr,
        ho,
        xt,
        yt,
        size=(size, size),
        channels=channels,
        mean=mean * channels,
        std=std * channels,
        source=f"{name}:{content_hash}:{holdout_size}",
    )


#: Pixels of one CIFAR-10 image (3 x 32 x 32), the length of a row of a batch's ``data``.
CIFAR10_IMAGE_BYTES = 3 * 32 * 32


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of one CIFAR-10 python batch.

    The batch is read with ``envs.workloads.safe_load.DataUnpickler``: a file that asks for anything
    but plain data (a crafted pickle that would run code) raises ``UnsafePickleError``,
    and nothing in it runs. ``ValueError`` naming the file if it is not a CIFAR-10 batch.
    """
    from envs.workloads.safe_load import load_data_pickle

    where = f"CIFAR-10 batch {str(path)!r}"
    d = load_data_pickle(path, what="CIFAR-10 batch")
    if isinstance(d, dict):  # Python 2 batches may carry bytes keys
        d = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise ValueError(f"{where} is not a CIFAR-10 batch: expected a dict with data and labels")
    data, labels = d["data"], d["labels"]
    try:
        if not isinstance(data, np.ndarray) or data.dtype.kind not in "ui":
            raise ValueError("data is not an integer array")
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        targets = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where} is not a CIFAR-10 batch: data must be N x {CIFAR10_IMAGE_BYTES} bytes "
            f"and labels N integers ({exc})"
        ) from None
    if len(images) != len(targets):
        raise ValueError(
            f"{where}: {len(images)} images but {len(targets)} labels; not a CIFAR-10 batch"
        )
    return images, targets


def is_cifar10_dir(path: Path) -> bool:
    """Whether ``path`` holds CIFAR-10's python batches (``data_batch_*``, ``test_batch``)."""
    return (path / "test_batch").is_file() and any(path.glob("data_batch_*"))


def load_cifar10_splits(
    path: str | Path,
    *,
    size: int = 32,
    holdout_size: int | None = None,
) -> Splits:
    """CIFAR-10 from a directory of the python pickle batches, as distributed.

    ``data_batch_*`` are the training data (``holdout_size`` of them, stratified, form the
    search holdout; default 5,000 as in AMC, at most a tenth of the training data);
    ``test_batch`` is the test split. The batches are read with a restricted unpickler
    (``read_cifar10_batch``): one that would run code is refused, not run.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"CIFAR-10 directory {str(root)!r} does not exist")
    if not is_cifar10_dir(root):
        raise ValueError(
            f"{str(root)!r} is not a CIFAR-10 python directory: expected data_batch_1.."
            "data_batch_5 and test_batch"
        )

    def load(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for f in files:
            images, labels = read_cifar10_batch(f)
            xs.append(images)
            ys.append(labels)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    x, y = load(sorted(root.glob("data_batch_*")))
    xt, yt = load([root / "test_batch"])
    if holdout_size is None:
        holdout_size = min(5000, len(y) // 10)
    tr, ho = stratified_split(y.numpy(), size=holdout_size)
    return _make_splits(
        x,
        y,
        tr,
        ho,
        xt,
        yt,
        size=(size, size),
        channels=3,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        source=f"cifar10:{root.resolve()}",
    )


#: Files in an image folder that are not images, after which its scan stops. A data folder
#: may hold a few stray files (a README, labels.csv, .DS_Store in each class); ten thousand
#: means it is not an image folder (``/proc``, a home directory), whose walk would never end.
MAX_STRAY_FILES = 10_000
#: Directories an image folder's scan visits at most: ImageFolder wants one per class (1,000
#: for ImageNet, 10,000 for iNaturalist), and a million is beyond any labelled image set.
MAX_SCAN_DIRS = 1_000_000
#: What a ``--data`` directory should be, for messages.
DATA_DIR_KINDS = (
    "one sub-directory per class holding images (ImageFolder, optionally under train/ and "
    "test/ or val/), the four (Fashion-)MNIST idx files, or CIFAR-10 python batches "
    "(data_batch_1..5, test_batch)"
)


def scan_image_folder(
    directory: str | Path,
    class_to_idx: dict[str, int],
    extensions: tuple[str, ...],
    *,
    max_stray: int = MAX_STRAY_FILES,
    max_dirs: int = MAX_SCAN_DIRS,
) -> list[tuple[str, int]]:
    """``(path, class index)`` of every image under each class folder, as torchvision's
    ``make_dataset`` lists them (symbolic links followed, sorted), but bounded.

    ``ValueError`` saying what a data folder should hold once ``max_stray`` files that are
    not images or ``max_dirs`` directories have been seen; a directory reached again
    through a symbolic link (a cycle) is not walked twice.
    """
    root = str(directory)
    instances: list[tuple[str, int]] = []
    stray = dirs = 0
    example = ""

    def refuse(what: str) -> ValueError:
        return ValueError(
            f"data folder {root!r} does not look like an image folder: its scan stopped "
            f"after {what} (e.g. {example!r}); expected {DATA_DIR_KINDS}"
        )

    for target_class in sorted(class_to_idx):
        target_dir = os.path.join(root, target_class)
        if not os.path.isdir(target_dir):
            continue
        seen: set[tuple[int, int]] = set()
        walked: list[tuple[str, list[str]]] = []
        for here, subdirs, fnames in os.walk(target_dir, followlinks=True):
            try:
                st = os.stat(here)
            except OSError:
                subdirs[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen:
                subdirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs += 1
            if dirs > max_dirs:
                example = here
                raise refuse(f"{max_dirs} directories")
            for fname in fnames:
                if not fname.lower().endswith(extensions):
                    stray += 1
                    example = os.path.join(here, fname)
                    if stray > max_stray:
                        raise refuse(f"{max_stray} files that are not images")
            walked.append((here, fnames))
        for here, fnames in sorted(walked):
            for fname in sorted(fnames):
                if fname.lower().endswith(extensions):
                    instances.append((os.path.join(here, fname), class_to_idx[target_class]))
    found = {i for _, i in instances}
    empty = sorted(c for c, i in class_to_idx.items() if i not in found)
    if empty:
        raise FileNotFoundError(
            f"Found no valid file for the classes {', '.join(empty)}. "
            f"Supported extensions are: {', '.join(extensions)}"
        )
    return instances


def _image_folder(root: str, transform: Any) -> Any:
    """torchvision's ``ImageFolder`` of ``root`` whose scan is ``scan_image_folder``'s."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    class BoundedImageFolder(ImageFolder):
        @staticmethod
        def make_dataset(
            directory: Any,
            class_to_idx: dict[str, int],
            extensions: Any = None,
            is_valid_file: Any = None,
            allow_empty: bool = False,
        ) -> list[tuple[str, int]]:
            return scan_image_folder(directory, class_to_idx, tuple(extensions or IMG_EXTENSIONS))

    return BoundedImageFolder(root, transform=transform)


def load_imagefolder_splits(
    path: str | Path,
    *,
    size: int = 224,
    holdout_size: int | float = 0.1,
    test_size: int | float = 0.2,
) -> Splits:
    """An ImageFolder directory (one sub-directory per class).

    If ``path`` has ``train/`` and ``test/`` (or ``val/``) sub-directories they are the
    training and test data; otherwise one folder is split (``test_size``, stratified).
    The holdout (``holdout_size``, stratified) is carved out of the training data. Images
    are resized (shorter side) and centre-cropped to ``size`` and normalised with the
    ImageNet constants; they are read from disk on access.
    """
    from torchvision import transforms

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image directory {str(root)!r} does not exist")
    tf = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    try:
        if (root / "train").is_dir() and test_dir is not None:
            full = _image_folder(str(root / "train"), tf)
            test: Dataset = _image_folder(str(test_dir), tf)
            if test.classes != full.classes:
                raise ValueError(
                    f"train and {test_dir.name} folders of {str(root)!r} have different classes"
                )
            trainval = np.arange(len(full))
        else:
            full = _image_folder(str(root), tf)
            rest, te = stratified_split(np.asarray(full.targets), size=test_size)
            test = Subset(full, te.tolist())
            trainval = rest
    except FileNotFoundError as exc:  # torchvision's message for an empty / bad tree
        raise ValueError(
            f"{str(root)!r} is not an ImageFolder directory ({exc}); a data directory holds "
            f"{DATA_LAYOUTS}"
        ) from exc
    targets = np.asarray(full.targets)[trainval]
    tr, ho = stratified_split(targets, size=holdout_size)
    return Splits(
        train=Subset(full, trainval[tr].tolist()),
        holdout=Subset(full, trainval[ho].tolist()),
        test=test,
        num_classes=len(full.classes),
        input_shape=(3, size, size),
        source=f"imagefolder:{root.resolve()}",
    )


def make_synthetic_splits(
    *,
    input_shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    train_size: int = 512,
    holdout_size: int = 128,
    test_size: int = 128,
    noise: float = 0.6,
    seed: int = SPLIT_SEED,
) -> Splits:
    """Generated, learnable, class-conditional images of ``input_shape`` (for tests).

    Each class has a smooth random prototype (4x4 noise upsampled); a sample is its
    class prototype plus Gaussian pixel noise of std ``noise``. Deterministic in ``seed``.
    """
    c, h, w = input_shape
    if min(input_shape) < 1 or num_classes < 2:
        raise ValueError(
            f"synthetic data needs a positive input shape and >= 2 classes, got "
            f"{input_shape} and {num_classes}"
        )
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(
        torch.randn(num_classes, c, 4, 4, generator=g), size=(h, w), mode="bilinear"
    )
    n = train_size + holdout_size + test_size
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    x = protos[y] + noise * torch.randn(n, c, h, w, generator=g)
    a, b = train_size, train_size + holdout_size

    def mk(sl: slice) -> ImageSplit:
        return ImageSplit(x[sl], y[sl], size=(h, w), channels=c, mean=(0.0,) * c, std=(1.0,) * c)

    return Splits(
        train=mk(slice(0, a)),
        holdout=mk(slice(a, b)),
        test=mk(slice(b, n)),
        num_classes=num_classes,
        input_shape=(c, h, w),
        source=f"synthetic:{c}x{h}x{w}:{num_classes}:{seed}",
    )
