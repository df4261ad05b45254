"""Find the prunable layers of any network from a real forward pass."""

from __future__ import annotations

import torch
from torch import nn

from hwmodels import LayerSpec


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_kind(m: nn.Conv2d) -> str:
    if m.groups == 1:
        return "conv"
    if m.groups == m.in_channels and m.out_channels % m.in_channels == 0:
        return "depthwise"
    return "grouped"


@torch.no_grad()
def inspect_model(model: nn.Module, example_input: torch.Tensor) -> list[LayerSpec]:
    """``LayerSpec`` of every ``Conv2d`` and ``Linear`` layer, in execution order.

    Runs ``model`` once on ``example_input`` with forward hooks, so spatial sizes are the
    real ones and no per-architecture layer list is needed. A module called several times
    (weight sharing) is reported once, at its first call. Names are those of
    ``model.named_modules()``.
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {type(example_input).__name__}")
    names = {m: n for n, m in model.named_modules()}
    specs: dict[str, LayerSpec] = {}
    batch = int(example_input.shape[0])

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name = names[module]
        if name in specs:
            return
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            specs[name] = LayerSpec(
                name=name,
                kind=_conv_kind(module),
                in_channels=module.in_channels,
                out_channels=module.out_channels,
                kernel=_pair(module.kernel_size),
                stride=_pair(module.stride),
                padding=_pair(module.padding) if not isinstance(module.padding, str) else (0, 0),
                groups=module.groups,
                in_hw=(int(x.shape[-2]), int(x.shape[-1])),
                out_hw=(int(output.shape[-2]), int(output.shape[-1])),
                batch=batch,
            )
        else:
            # Tokens of a sequence input count as output positions of the GEMM.
            tokens = int(x.numel() // (x.shape[0] * x.shape[-1])) if x.dim() > 2 else 1
            specs[name] = LayerSpec(
                name=name,
                kind="linear",
                in_channels=module.in_features,
                out_channels=module.out_features,
                out_hw=(tokens, 1),
                in_hw=(tokens, 1),
                batch=batch,
            )

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    try:
        model.eval()
        model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not specs:
        raise ValueError("model has no Conv2d or Linear layer to prune")
    return list(specs.values())
