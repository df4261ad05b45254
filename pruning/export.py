"""Write a pruned model in every form a user deploys: masked, compact, sparse, ONNX.

Layout of an export directory::

    manifest.json        what produced it, per-layer densities, files, recorded metrics
    state_dict.pt        masked weights (zeros in place), for the original architecture;
                         loads with ``torch.load(..., weights_only=True)``
    program.pt2          ``torch.export`` program of the masked model: runs with no
                         Python class (``load_exported``)
    compact/program.pt2  physically smaller network (channel scheme: channels removed)
    sparse/<layer>.npz   each layer in the scheme's hardware index format
    model.onnx           ONNX of the compact model if there is one, else the masked one
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwmodels import LayerSpec
from pruning.base import PruningScheme

EXPORT_FORMATS: tuple[str, ...] = ("masked", "compact", "sparse", "onnx")
MANIFEST = "manifest.json"


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    """Validate export format names; ``ValueError`` names the valid ones."""
    formats = tuple(formats)
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise ValueError(
            f"unknown export format(s) {', '.join(map(repr, bad))}; "
            f"valid: {', '.join(EXPORT_FORMATS)}"
        )
    return formats


def _batched(example_input: torch.Tensor) -> tuple[torch.Tensor, tuple[dict[int, Any], ...]]:
    """An example of batch 2 and a dynamic batch dimension.

    torch.export specialises dimensions of size 1, so the example must have 2 images for
    the batch to stay dynamic.
    """
    x = example_input[:1].expand(2, *example_input.shape[1:]).contiguous()
    return x, ({0: torch.export.Dim("batch", min=1, max=1 << 16)},)


def _save_program(model: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x, dynamic = _batched(example_input)
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=dynamic)
    torch.export.save(program, str(path))


def _write_sparse(
    model: nn.Module, scheme: PruningScheme, layers: list[LayerSpec], out: Path
) -> dict[str, Any]:
    from pruning.formats import encode

    out.mkdir(parents=True, exist_ok=True)
    modules = dict(model.named_modules())
    summary: dict[str, Any] = {}
    for layer in layers:
        weight = modules[layer.name].weight.detach().cpu()
        encoded = encode(scheme, weight, weight != 0, layer)
        np.savez_compressed(out / f"{layer.name}.npz", **encoded.to_arrays())
        summary[layer.name] = {
            "values": int(encoded.value_count),
            "metadata_bits": int(encoded.metadata_bits),
        }
    return summary


def export_pruned(
    model: nn.Module,
    example_input: torch.Tensor,
    out_dir: str | Path,
    *,
    scheme: PruningScheme,
    layers: list[LayerSpec],
    manifest: Mapping[str, Any],
    formats: Iterable[str] = EXPORT_FORMATS,
    overwrite: bool = False,
) -> Path:
    """Export ``model`` (masks already made permanent) to ``out_dir``.

    Everything is written to a temporary directory beside ``out_dir`` and moved into place
    at the end, so a failure leaves nothing half-written. ``compact`` applies only to
    schemes that remove whole channels and is skipped for the others (noted in the
    manifest).
    """
    formats = check_formats(formats)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"export directory {str(out)!r} exists; pass overwrite=True")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    model = model.eval()
    files: dict[str, str] = {}
    notes: dict[str, str] = {}
    try:
        torch.save(model.state_dict(), tmp / "state_dict.pt")
        files["state_dict"] = "state_dict.pt"
        deploy = model
        if "masked" in formats:
            _save_program(model, example_input, tmp / "program.pt2")
            files["masked"] = "program.pt2"
        if "compact" in formats:
            if scheme.removes_channels:
                from pruning.compact import compact_model

                masks = {f"{layer.name}.weight": _weight(model, layer) != 0 for layer in layers}
                deploy = compact_model(model, example_input, masks)
                _save_program(deploy, example_input, tmp / "compact" / "program.pt2")
                files["compact"] = "compact/program.pt2"
            else:
                notes["compact"] = f"scheme {scheme.name!r} removes no whole channel"
        sparse_summary = None
        if "sparse" in formats:
            sparse_summary = _write_sparse(model, scheme, layers, tmp / "sparse")
            files["sparse"] = "sparse/"
        if "onnx" in formats:
            x, dynamic = _batched(example_input)
            # torch.onnx prints eight progress lines to stdout; a CLI's output is its own.
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    deploy, (x,), str(tmp / "model.onnx"), dynamo=True, dynamic_shapes=dynamic
                )
            files["onnx"] = "model.onnx"
        body = {
            **dict(manifest),
            "input_shape": list(example_input.shape),
            "files": files,
            "notes": notes,
            "parameters": {
                "total": int(sum(p.numel() for p in model.parameters())),
                "nonzero": int(sum(int((p != 0).sum()) for p in model.parameters())),
                "compact_total": int(sum(p.numel() for p in deploy.parameters())),
            },
        }
        if sparse_summary is not None:
            body["sparse_layers"] = sparse_summary
        (tmp / MANIFEST).write_text(json.dumps(body, indent=2, default=str))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _weight(model: nn.Module, layer: LayerSpec) -> torch.Tensor:
    return model.get_submodule(layer.name).weight.detach()


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """The manifest of an export directory (``FileNotFoundError`` if it is not one)."""
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{str(export_dir)!r} is not an hwprune export (no {MANIFEST})")
    return json.loads(path.read_text())


def load_exported(export_dir: str | Path, kind: str = "masked") -> nn.Module:
    """Load a runnable module from an export: ``kind`` is ``"masked"`` or ``"compact"``.

    Uses ``torch.export`` programs, so no Python class and no pickle is needed.
    """
    manifest = read_manifest(export_dir)
    if kind not in ("masked", "compact"):
        raise ValueError(f"unknown kind {kind!r}; valid: masked, compact")
    rel = manifest["files"].get(kind)
    if rel is None:
        have = ", ".join(k for k in ("masked", "compact") if k in manifest["files"])
        raise KeyError(f"export has no {kind!r} model; it has: {have or 'none'}")
    return InferenceProgram(torch.export.load(str(Path(export_dir) / rel)).module())


class InferenceProgram(nn.Module):
    """A loaded ``torch.export`` program as a plain module, frozen in inference mode.

    Exported programs refuse ``train()``/``eval()``; the program was exported in eval mode
    (BatchNorm statistics baked in), so switching modes is accepted and changes nothing.
    """

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the exported program."""
        return self.program(x)

    def train(self, mode: bool = True) -> InferenceProgram:
        """No-op: the program is fixed in inference mode."""
        self.training = False
        return self
