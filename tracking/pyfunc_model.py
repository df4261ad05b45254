"""The pruned model as an MLflow pyfunc model: raw images in, classes out.

Logged as MLflow "model from code": this file travels with the model, so loading it
needs MLflow, numpy and torch, not hwprune. The model's one artifact is the hwprune
export directory (``pruning.export``); the preprocessing the network was trained with
(resize, channels, mean and std) comes from its manifest, so callers pass images as the
dataset stores them.

``mlflow.pyfunc.load_model(uri).predict(images)``: ``images`` is an array ``(N, h, w)``
or ``(N, C, h, w)`` of floats in [0, 1] or uint8 in [0, 255]; the result is the
predicted class per image, or with ``params={"output": "probabilities"}`` an
``(N, classes)`` array of softmax probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812


def preprocess(images: Any, spec: dict[str, Any]) -> torch.Tensor:
    """Raw images -> the network's input tensor, as the training data was prepared.

    It restates ``envs.workloads.data.ImageSplit.batch`` on purpose: this file must load without
    hwprune installed. ``tests/integration/test_search.py`` checks both give the same accuracy.
    """
    x = torch.as_tensor(np.asarray(images))
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"images must be (N, h, w) or (N, C, h, w), got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    size = tuple(spec["size"])
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    channels = int(spec["channels"])
    if x.shape[1] != channels:
        x = x.expand(-1, channels, -1, -1)
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous()


class PrunedImageClassifier(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of an hwprune export (its compact program if it has one)."""

    # The logged signature describes the input; MLflow would otherwise warn that predict
    # has no type hints (hints would make it expect a list of inputs).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load the exported program and the preprocessing of its manifest."""
        root = Path(context.artifacts["export"])
        manifest = json.loads((root / "manifest.json").read_text())
        files = manifest["files"]
        rel = files.get("compact") or files["masked"]
        self.program = torch.export.load(str(root / rel)).module()
        self.preprocessing = manifest["preprocessing"]

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        """Classes (default) or ``params={"output": "probabilities"}``."""
        output = (params or {}).get("output", "label")
        if output not in ("label", "probabilities"):
            raise ValueError(f"unknown output {output!r}; valid: label, probabilities")
        with torch.inference_mode():
            logits = self.program(preprocess(model_input, self.preprocessing))
        if output == "probabilities":
            return torch.softmax(logits, dim=1).numpy()
        return logits.argmax(dim=1).numpy()


mlflow.models.set_model(PrunedImageClassifier())
