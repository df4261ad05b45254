"""The hardware's view of one prunable layer, and the weight layout every part agrees on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

LayerKind = Literal["conv", "depthwise", "grouped", "linear"]
LAYER_KINDS: tuple[str, ...] = ("conv", "depthwise", "grouped", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one prunable layer as the hardware sees it.

    Built by ``pruning.inspect_model`` from a real forward pass; a linear layer has
    ``kernel == (1, 1)`` and spatial sizes ``(1, 1)`` (or the token count for sequence
    inputs, folded into ``out_hw``).

    The weight tensor has shape ``(out_channels, in_channels // groups, *kernel)`` for a
    conv and ``(out_channels, in_channels)`` for a linear layer. Its *unrolled* matrix
    (``unroll``) is ``(out_channels, K)`` with ``K = in_channels // groups * kh * kw`` in
    PyTorch's ``(cin, kh, kw)`` order: the order of an im2col column, and so the order in
    which an accelerator streams input activations.
    """

    name: str
    kind: LayerKind
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    batch: int = 1

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; valid: {', '.join(LAYER_KINDS)}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"layer {self.name!r}: channels ({self.in_channels}, {self.out_channels}) "
                f"are not divisible by groups={self.groups}"
            )

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight tensor."""
        if self.kind == "linear":
            return (self.out_channels, self.in_channels)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def fan_in(self) -> int:
        """K: weights per output channel (rows of the unrolled matrix per column)."""
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]

    @property
    def params(self) -> int:
        """Number of weights (bias excluded)."""
        return self.out_channels * self.fan_in

    @property
    def output_pixels(self) -> int:
        """Output positions per image times batch: the M of the implicit GEMM."""
        return self.batch * self.out_hw[0] * self.out_hw[1]

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates of one forward pass."""
        return self.output_pixels * self.params

    @property
    def is_pointwise(self) -> bool:
        """True for linear layers and 1x1 convolutions (no kernel-internal structure)."""
        return self.kernel == (1, 1)


def unroll(mask_or_weight: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """Reshape a weight-shaped array to the unrolled ``(out_channels, K)`` matrix."""
    arr = np.asarray(mask_or_weight)
    if tuple(arr.shape) != layer.weight_shape:
        raise ValueError(
            f"layer {layer.name!r}: array shape {tuple(arr.shape)} does not match "
            f"weight shape {layer.weight_shape}"
        )
    return arr.reshape(layer.out_channels, layer.fan_in)
