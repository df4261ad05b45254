"""Hand-written layer lists and synthetic masks, for tests and benchmarks without torch.

Real searches get their layers from ``pruning.inspect_model``; these exist so that a cost
model can be checked against published figures (VGG-16) on shapes alone.
"""

from __future__ import annotations

import numpy as np

from hwmodels.layer import LayerSpec

# VGG-16 conv widths; "M" is a 2x2 max-pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def vgg16_layers(
    input_hw: int = 224, *, num_classes: int = 1000, batch: int = 1, classifier: bool = True
) -> list[LayerSpec]:
    """VGG-16 (torchvision layout): 13 3x3 convs (padding 1) and, optionally, 3 FC layers.

    Names follow torchvision's ``vgg16``: ``features.<i>`` and ``classifier.<i>``. The FC
    layers assume the 7x7 adaptive pool of torchvision (any ``input_hw``).
    """
    layers: list[LayerSpec] = []
    cin, hw, idx = 3, input_hw, 0
    for item in _VGG16_CFG:
        if item == "M":
            hw //= 2
            idx += 1
            continue
        cout = int(item)
        layers.append(
            LayerSpec(
                name=f"features.{idx}",
                kind="conv",
                in_channels=cin,
                out_channels=cout,
                kernel=(3, 3),
                padding=(1, 1),
                in_hw=(hw, hw),
                out_hw=(hw, hw),
                batch=batch,
            )
        )
        cin = cout
        idx += 2  # conv followed by its ReLU
    if classifier:
        for i, (fin, fout) in enumerate(((512 * 49, 4096), (4096, 4096), (4096, num_classes))):
            layers.append(
                LayerSpec(
                    name=f"classifier.{3 * i}",
                    kind="linear",
                    in_channels=fin,
                    out_channels=fout,
                    batch=batch,
                )
            )
    return layers


def random_mask(layer: LayerSpec, density: float, rng: np.random.Generator) -> np.ndarray:
    """Unstructured mask keeping each weight independently with probability ``density``."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density {density} is outside [0, 1]")
    return rng.random(layer.weight_shape) < density


def balanced_mask(layer: LayerSpec, keep: int, group: int, rng: np.random.Generator) -> np.ndarray:
    """Kang-balanced mask: exactly ``keep`` random weights kept in every ``group`` of K.

    A shorter last group keeps ``min(keep, its length)``.
    """
    if not 0 <= keep <= group:
        raise ValueError(f"keep={keep} must be within [0, group={group}]")
    k = layer.fan_in
    nb = -(-k // group)
    scores = rng.random((layer.out_channels, nb * group))
    scores[:, k:] = -1.0  # padding is never kept
    ranks = np.argsort(np.argsort(-scores.reshape(layer.out_channels, nb, group), axis=2), axis=2)
    keep_pad = (ranks < keep).reshape(layer.out_channels, nb * group)
    keep_pad[:, k:] = False
    return keep_pad[:, :k].reshape(layer.weight_shape)
