"""Export of a pruned model in every format: masked, compact, sparse, ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from agents.app.finalize import pruned_model
from envs import build_task
from hwmodels import get_hardware
from pruning import get_scheme
from pruning.export import EXPORT_FORMATS, export_pruned, load_exported, read_manifest
from pruning.formats import EncodedLayer


@pytest.fixture(scope="module")
def exported(tiny_workload, tmp_path_factory):
    hw = get_hardware("gpu-jetson-tx2")
    task = build_task(tiny_workload, get_scheme("channel", hardware=hw), hw)
    choice = [0] * len(task.decisions)
    model = pruned_model(task, choice)
    out = tmp_path_factory.mktemp("exp") / "model"
    export_pruned(
        model,
        tiny_workload.example_input,
        out,
        scheme=task.scheme,
        layers=task.layers,
        manifest={"policy": {"densities": task.densities(choice)}},
    )
    return task, model, out


def test_every_format_is_written_and_listed(exported):
    _, _, out = exported
    manifest = read_manifest(out)
    assert set(manifest["files"]) == {"state_dict", *EXPORT_FORMATS}
    for rel in manifest["files"].values():
        assert (out / rel).exists()
    # The compact network is really smaller.
    params = manifest["parameters"]
    assert params["compact_total"] < params["total"]


def test_compact_and_onnx_match_the_masked_model(exported):
    _, model, out = exported
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        want = model(x)
        masked = load_exported(out, "masked").eval()(x)
        compact = load_exported(out, "compact")(x)
    assert torch.allclose(masked, want, atol=1e-5)
    assert torch.allclose(compact, want, atol=1e-4)
    session = ort.InferenceSession(str(out / "model.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_sparse_files_decode_to_the_pruned_weights(exported):
    task, model, out = exported
    for layer in task.layers:
        arrays = dict(np.load(out / "sparse" / f"{layer.name}.npz"))
        decoded = EncodedLayer.from_arrays(arrays).decode()
        weight = model.get_submodule(layer.name).weight.detach()
        assert torch.equal(torch.as_tensor(np.asarray(decoded)).to(weight.dtype), weight)


def test_existing_directory_is_not_overwritten_and_nothing_half_written(exported, tmp_path):
    task, model, out = exported
    with pytest.raises(FileExistsError, match="exists"):
        export_pruned(
            model,
            torch.zeros(1, 1, 8, 8),
            out,
            scheme=task.scheme,
            layers=task.layers,
            manifest={},
        )
    with pytest.raises(ValueError, match="unknown export format"):
        export_pruned(
            model,
            torch.zeros(1, 1, 8, 8),
            tmp_path / "x",
            scheme=task.scheme,
            layers=task.layers,
            manifest={},
            formats=("masked", "tflite"),
        )
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
