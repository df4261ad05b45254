"""The committed fashion-vgg checkpoint: found, checked against its sha256, loaded fast,
and scoring the test accuracy recorded when it was trained."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from envs.workloads.builtin import CHECKPOINT_DIR, file_sha256, load_shipped, shipped_record
from envs.workloads.data import fashion_mnist_dir
from envs.workloads.models import FashionVGG

RECORD = CHECKPOINT_DIR / "fashion-vgg.json"


def test_record_matches_the_file():
    record = shipped_record("fashion-vgg")
    path = CHECKPOINT_DIR / record["file"]
    assert path.stat().st_size <= 10 * 2**20
    assert file_sha256(path) == record["sha256"]
    assert record["recipe"]["architecture"] == "fashion-vgg"
    assert 0.9 < record["test_accuracy"] <= 1.0


def _fashion_installed() -> bool:
    try:
        fashion_mnist_dir()
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _fashion_installed(), reason="Fashion-MNIST is not installed (make data)")
def test_loads_in_seconds_and_scores_its_recorded_accuracy(tmp_path, monkeypatch):
    from envs.workloads.builtin import get_workload
    from envs.workloads.evaluation import accuracy

    monkeypatch.setenv("HWPRUNE_CACHE", str(tmp_path))  # nothing cached: the file is used
    t0 = time.perf_counter()
    workload = get_workload("fashion-vgg")
    seconds = time.perf_counter() - t0
    assert workload.meta["shipped"] is True
    assert not (tmp_path / "workloads").exists()  # nothing was trained
    assert seconds <= 5.0, f"loading took {seconds:.1f} s"
    recorded = shipped_record("fashion-vgg")["test_accuracy"]
    # The same images and weights: at most an image flipped by summation order.
    assert accuracy(workload.model, workload.test) == pytest.approx(recorded, abs=2e-4)


def test_a_checkpoint_with_another_sha256_is_refused_naming_both(tmp_path):
    record = json.loads(RECORD.read_text())
    shutil.copyfile(CHECKPOINT_DIR / record["file"], tmp_path / record["file"])
    (tmp_path / "fashion-vgg.json").write_text(json.dumps(record))
    with open(tmp_path / record["file"], "r+b") as fh:  # flip one byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    actual = file_sha256(tmp_path / record["file"])
    with pytest.raises(ValueError, match=f"sha256 {actual}.*says {record['sha256']}"):
        load_shipped(FashionVGG(), "fashion-vgg", directory=tmp_path)
