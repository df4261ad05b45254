"""Data sources and the shared evaluation helpers (small, generated inputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from envs.workloads.data import (
    ImageSplit,
    load_digits_aug_splits,
    load_digits_splits,
    make_synthetic_splits,
)
from envs.workloads.evaluation import (
    accuracy,
    dataset_tensors,
    finetune,
    iter_batches,
    reestimate_batchnorm,
    resolve_device,
)
from tests.conftest import write_idx, write_idx_dir


def test_image_split_resizes_replicates_and_normalises() -> None:
    images = torch.rand(6, 1, 8, 8)
    split = ImageSplit(
        images, torch.arange(6) % 3, size=(16, 16), channels=3, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    x, y = split.batch(torch.arange(6))
    assert tuple(x.shape) == (6, 3, 16, 16) and torch.equal(x[:, 0], x[:, 2])
    assert split.num_classes == 3 and split.input_shape == (3, 16, 16)
    single, label = split[4]
    assert torch.allclose(single, x[4]) and label == 1
    with pytest.raises(ValueError, match="channels"):
        ImageSplit(
            torch.rand(2, 3, 4, 4), torch.zeros(2), size=(4, 4), channels=1, mean=(0,), std=(1,)
        )


def test_digits_splits_are_normalised_on_train() -> None:
    s = load_digits_splits(size=32)
    x, _ = dataset_tensors(s.train)
    assert tuple(x.shape[1:]) == (1, 32, 32)
    # Training statistics are computed at 8x8; bilinear upsampling keeps them close.
    assert abs(float(x.mean())) < 0.1 and 0.7 < float(x.std()) < 1.3


def test_synthetic_is_deterministic_and_shaped() -> None:
    a = make_synthetic_splits(input_shape=(2, 12, 10), num_classes=4)
    b = make_synthetic_splits(input_shape=(2, 12, 10), num_classes=4)
    assert torch.equal(a.test.images, b.test.images)
    assert a.input_shape == (2, 12, 10) and a.test[0][0].shape == (2, 12, 10)
    with pytest.raises(ValueError, match="classes"):
        make_synthetic_splits(num_classes=1)


def test_digits_aug_keeps_the_digits_split_and_distorts_deterministically() -> None:
    plain = load_digits_splits()
    a = load_digits_aug_splits(copies=(2, 1, 3))
    b = load_digits_aug_splits(copies=(2, 1, 3))
    assert [len(s) for s in (a.train, a.holdout, a.test)] == [
        2 * len(plain.train),
        len(plain.holdout),
        3 * len(plain.test),
    ]
    assert torch.equal(a.test.images, b.test.images)
    # Copy k of test glyph i is row k * 360 + i: same label, different views.
    assert torch.equal(a.test.labels[:360], plain.test.labels)
    assert torch.equal(a.test.labels[360:720], plain.test.labels)
    assert not torch.allclose(a.test.images[:360], a.test.images[360:720])
    assert a.input_shape == (1, 16, 16) and a.source != load_digits_aug_splits().source
    with pytest.raises(ValueError, match="copies"):
        load_digits_aug_splits(copies=(1, 0, 1))


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )


def test_reestimate_batchnorm_uses_only_given_batches() -> None:
    torch.manual_seed(0)
    model = _tiny()
    bn = model[1]
    x = torch.randn(32, 1, 8, 8) * 3 + 2
    reestimate_batchnorm(model, [x[:16], (x[16:], None)])
    expect = model[0](x).mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expect, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # momentum restored, eval mode
    with pytest.raises(ValueError, match="at least one batch"):
        reestimate_batchnorm(model, [])


def test_finetune_is_deterministic_and_learns() -> None:
    data = make_synthetic_splits(input_shape=(1, 8, 8), num_classes=3, noise=0.3)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _tiny()
        before = accuracy(model, data.test)
        finetune(model, data.train, steps=40, lr=0.05, seed=3)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert accuracy(model, data.test) > max(before, 0.8)
    with pytest.raises(ValueError, match="schedule"):
        finetune(model, data.train, steps=1, schedule="step")


def test_iter_batches_and_devices() -> None:
    data = make_synthetic_splits(input_shape=(1, 4, 4), train_size=10)
    sizes = [int(y.shape[0]) for _, y in iter_batches(data.train, batch_size=4)]
    assert sizes == [4, 4, 2]
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="valid choices"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


# --- (Fashion-)MNIST idx files -------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips(tmp_path, gz: bool) -> None:
    import numpy as np

    from envs.workloads.data import read_idx

    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    write_idx(path, a)
    assert np.array_equal(read_idx(path), a)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_bad_files(tmp_path, gz: bool) -> None:
    import numpy as np

    from envs.workloads.data import read_idx

    a = np.zeros((3, 4), dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"magic{sfx}", a, magic=b"\x12\x34\x08\x02")
    with pytest.raises(ValueError, match="not an idx file: bad magic number 12340802"):
        read_idx(tmp_path / f"magic{sfx}")
    write_idx(tmp_path / f"float{sfx}", a, magic=b"\x00\x00\x0d\x02")
    with pytest.raises(ValueError, match="idx type 0x0d is not supported"):
        read_idx(tmp_path / f"float{sfx}")
    write_idx(tmp_path / f"cut{sfx}", a, cut=5)
    with pytest.raises(ValueError, match="truncated or corrupt: 19 bytes.*needs 24"):
        read_idx(tmp_path / f"cut{sfx}")
    write_idx(tmp_path / f"header{sfx}", a, cut=18)
    with pytest.raises(ValueError, match="truncated: its header needs 12 bytes"):
        read_idx(tmp_path / f"header{sfx}")
    if gz:  # a gzip stream cut short is an unreadable file, not a short one
        (tmp_path / "stream.gz").write_bytes((tmp_path / "magic.gz").read_bytes()[:12])
        with pytest.raises(ValueError, match="cannot read idx file"):
            read_idx(tmp_path / "stream.gz")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_splits(tmp_path, gz: bool) -> None:
    from envs.workloads.data import is_idx_dir, load_idx_splits

    write_idx_dir(tmp_path, gz=gz)
    assert is_idx_dir(tmp_path)
    s = load_idx_splits(tmp_path, holdout_size=10)
    assert [len(s.train), len(s.holdout), len(s.test)] == [50, 10, 20]
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    # The holdout is stratified: one image of every class.
    assert sorted(s.holdout.labels.tolist()) == list(range(10))
    assert (
        s.source.startswith("idx:")
        and s.source == load_idx_splits(tmp_path, holdout_size=10).source
    )
    (tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if gz else ""))).unlink()
    with pytest.raises(ValueError, match="lacks the idx file.*t10k-labels-idx1-ubyte"):
        load_idx_splits(tmp_path)


def test_idx_directory_with_mismatched_counts_is_refused(tmp_path) -> None:
    import numpy as np

    from envs.workloads.data import load_idx_splits

    write_idx_dir(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="test images .* and labels .* do not match"):
        load_idx_splits(tmp_path, holdout_size=10)


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch) -> None:
    from envs.workloads.builtin import get_workload

    monkeypatch.setenv("HWPRUNE_FASHION_MNIST", str(tmp_path))
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist.*--data DIR"):
        get_workload("fashion-cnn")
    with pytest.raises(ValueError, match="neither a built-in source.*fashion-mnist"):
        get_workload("fashion-cnn", data=str(tmp_path / "nowhere"))


def test_idx_directory_is_a_data_source(tmp_path) -> None:
    from envs.workloads.builtin import _data_kind

    write_idx_dir(tmp_path, gz=True)
    assert _data_kind(str(tmp_path)) == "idx"
    assert _data_kind("fashion-mnist" if _fashion_installed() else "digits") in (
        "fashion-mnist",
        "digits",
    )


def test_a_data_directory_with_no_known_layout_names_every_one(tmp_path) -> None:
    """An empty folder, or one whose class folders hold no image: the message names the
    idx files, the CIFAR-10 batches and the ImageFolder layout, not just the last."""
    from typer.testing import CliRunner

    from agents.app.cli import app
    from envs.workloads.builtin import get_workload
    from envs.workloads.data import IDX_FILES

    wanted = [*IDX_FILES.values(), "gzipped or not", "data_batch_1", "test_batch", "ImageFolder"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "classes" / "cat").mkdir(parents=True)
    (tmp_path / "classes" / "cat" / "notes.txt").write_text("no image")
    for folder, model in (("empty", "digits-cnn"), ("classes", "resnet18")):
        with pytest.raises(ValueError) as err:
            get_workload(model, data=str(tmp_path / folder), train=False)
        assert str(tmp_path / folder) in str(err.value)
        assert all(w in str(err.value) for w in wanted), str(err.value)
    res = CliRunner().invoke(
        app, ["search", "--data", str(tmp_path / "empty"), "--episodes", "2", "--no-progress"]
    )
    assert res.exit_code == 2 and "error: data directory" in res.output
    assert all(w in " ".join(res.output.split()) for w in wanted)


def _fashion_installed() -> bool:
    from envs.workloads.data import FASHION_MNIST_DIR, is_idx_dir

    return is_idx_dir(FASHION_MNIST_DIR)


@pytest.mark.skipif(
    not _fashion_installed(),
    reason="Debian's dataset-fashion-mnist is not installed (make test installs it as root)",
)
def test_real_fashion_mnist_files() -> None:
    from envs.workloads.data import FASHION_MNIST_DIR, load_idx_splits

    s = load_idx_splits(FASHION_MNIST_DIR, name="fashion-mnist")
    assert [len(s.train), len(s.holdout), len(s.test)] == [55_000, 5_000, 10_000]
    assert s.num_classes == 10 and s.input_shape == (1, 28, 28)
    # Balanced classes: 6,000 training and 1,000 test images each.
    assert torch.bincount(s.test.labels).tolist() == [1000] * 10
    assert torch.bincount(s.holdout.labels).tolist() == [500] * 10
    x, _ = dataset_tensors(s.train, limit=2000)
    assert abs(float(x.mean())) < 0.1 and 0.8 < float(x.std()) < 1.2


# --- CIFAR-10 batches are user input: a restricted unpickler (issue 26, item 1) ----------


class _Payload:
    """A pickle that runs ``touch MARKER`` when plain ``pickle.load`` reads it."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _cifar_batch(n: int = 20) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "batch_label": "training batch 1 of 5",
        "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        "labels": [i % 10 for i in range(n)],
        "filenames": [f"img_{i}.png" for i in range(n)],
    }


def _write_cifar_dir(root, *, evil_marker=None, protocol: int = 2) -> None:
    import pickle

    root.mkdir(parents=True, exist_ok=True)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        blob = _cifar_batch()
        if evil_marker is not None and name == "data_batch_1":
            blob["labels"] = _Payload(evil_marker)
        (root / name).write_bytes(pickle.dumps(blob, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_of_plain_data_load(tmp_path, protocol: int) -> None:
    from envs.workloads.data import load_cifar10_splits

    _write_cifar_dir(tmp_path / "c", protocol=protocol)
    s = load_cifar10_splits(tmp_path / "c", holdout_size=10)
    assert (len(s.train), len(s.holdout), len(s.test)) == (30, 10, 20)
    assert s.input_shape == (3, 32, 32)


def test_cifar_batch_written_by_python2_numpy_loads(tmp_path) -> None:
    """The official batches name ``numpy.core.multiarray`` (numpy 1), not ``numpy._core``."""
    import pickle

    import numpy as np

    from envs.workloads.data import read_cifar10_batch

    blob = pickle.dumps(_cifar_batch(4), protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray\n_reconstruct" in blob
    (tmp_path / "data_batch_1").write_bytes(blob)
    images, labels = read_cifar10_batch(tmp_path / "data_batch_1")
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_that_would_run_code_is_refused_and_nothing_runs(tmp_path, protocol) -> None:
    import pickle

    from envs.workloads.data import load_cifar10_splits
    from envs.workloads.safe_load import UnsafePickleError

    marker = tmp_path / "pwned"
    _write_cifar_dir(tmp_path / "c", evil_marker=marker, protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"data_batch_1' is refused: it asks to load posix"):
        load_cifar10_splits(tmp_path / "c")
    assert not marker.exists()
    # The file is a working exploit: plain pickle does run it.
    pickle.loads((tmp_path / "c" / "data_batch_1").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"data": [1, 2]}, "expected a dict with data and labels"),
        ({"data": b"x" * 3072, "labels": [0]}, "data must be N x 3072 bytes"),
        ({"data": "text", "labels": [0]}, "data must be N x 3072 bytes"),
        ([1, 2, 3], "expected a dict with data and labels"),
    ],
)
def test_a_cifar_batch_that_is_not_one_is_one_clear_error(tmp_path, content, message) -> None:
    import pickle

    from envs.workloads.data import read_cifar10_batch

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(ValueError, match=message):
        read_cifar10_batch(path)
    path.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="is not a readable pickle"):
        read_cifar10_batch(path)


def test_search_on_a_crafted_cifar_folder_exits_2_and_creates_nothing(tmp_path) -> None:
    import mlflow
    from typer.testing import CliRunner

    from agents.app.cli import app

    marker = tmp_path / "pwned"
    _write_cifar_dir(tmp_path / "c", evil_marker=marker)
    before = len(mlflow.search_runs(search_all_experiments=True))
    res = CliRunner().invoke(
        app,
        ["search", "--model", "resnet20", "--data", str(tmp_path / "c"), "--episodes", "2",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: CIFAR-10 batch") and "is refused" in lines[-1], lines
    assert not marker.exists()
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


# --- the scan of a data folder is bounded (issue 26, item 7) -----------------------------


def _image_tree(root, layout: dict[str, list[str]]) -> None:
    from PIL import Image

    for rel_dir, names in layout.items():
        d = root / rel_dir
        d.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name.endswith(".png"):
                Image.new("RGB", (4, 4)).save(d / name)
            else:
                (d / name).write_text("not an image")


def test_image_folder_scan_lists_what_torchvision_lists(tmp_path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    from envs.workloads.data import scan_image_folder

    _image_tree(
        tmp_path,
        {"cat": ["b.png", "a.png", "notes.txt"], "cat/sub": ["c.PNG", "d.png"],
         "dog": ["z.png", "README"], "dog/x/y": ["e.png"]},
    )  # fmt: skip
    _, class_to_idx = find_classes(tmp_path)
    assert scan_image_folder(tmp_path, class_to_idx, IMG_EXTENSIONS) == make_dataset(
        tmp_path, class_to_idx, IMG_EXTENSIONS
    )


def test_image_folder_scan_stops_at_stray_files_and_directories(tmp_path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from envs.workloads.data import scan_image_folder

    _image_tree(tmp_path, {"a": ["1.png", "x1", "x2", "x3", "x4"], "b": ["2.png"], "b/c/d": []})
    classes = {"a": 0, "b": 1}
    assert len(scan_image_folder(tmp_path, classes, IMG_EXTENSIONS, max_stray=4)) == 2
    with pytest.raises(ValueError, match="after 3 files that are not images .*expected one sub-"):
        scan_image_folder(tmp_path, classes, IMG_EXTENSIONS, max_stray=3)
    with pytest.raises(ValueError, match="after 3 directories"):
        scan_image_folder(tmp_path, classes, IMG_EXTENSIONS, max_dirs=3)


def test_image_folder_scan_does_not_loop_through_symlink_cycles(tmp_path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from envs.workloads.data import scan_image_folder

    _image_tree(tmp_path, {"a": ["1.png"], "a/deep": ["2.png"]})
    (tmp_path / "a" / "deep" / "loop").symlink_to(tmp_path / "a")  # a cycle
    found = scan_image_folder(tmp_path, {"a": 0}, IMG_EXTENSIONS)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in found) == ["1.png", "2.png"]


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="no /proc here")
def test_data_proc_is_refused_quickly_saying_what_was_expected() -> None:
    import time

    from typer.testing import CliRunner

    from agents.app.cli import app

    t0 = time.monotonic()
    res = CliRunner().invoke(
        app, ["search", "--model", "resnet20", "--data", "/proc", "--episodes", "2",
              "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    last = [line for line in res.output.splitlines() if line.strip()][-1]
    assert last.startswith("error: data folder '/proc' does not look like an image folder"), last
    assert "CIFAR-10 python batches" in last
    assert time.monotonic() - t0 < 120
