"""An int8 copy of a BatchNorm-folded twin's trunk (everything before the classifier head).

The ``holdout`` proxy's scoring pass is the network in inference mode with BatchNorm
folded into the convolutions (:mod:`envs.proxies.folding`). On a CPU without fast low-precision
floating point (this project's development machine is an AVX2 core: no AVX512-BF16 or
-FP16, where bf16 autocast ran 7x slower than fp32), the cheaper arithmetic is int8: the
folded Conv + ReLU pairs run as quantized convolutions (oneDNN, per-channel symmetric
int8 weights, uint8 activations), max-pooling runs on the uint8 tensors, and the trunk's
output (the head's input) is dequantized to fp32, where the head is applied.

Per evaluation, :meth:`Int8Trunk.sync` quantizes the twin's current folded weights and
sets every convolution's output scale from that layer's activation range, which the
caller measures where it is free: in the BatchNorm re-estimation pass (the amax of each
BatchNorm output over the calibration batches). Inputs are quantized once
(:meth:`Int8Trunk.quantize_input`): they are fixed data.

Only chain networks are supported: folded Conv -> ReLU pairs, max/average pooling,
flatten, dropout/identity, then the head. :meth:`Int8Trunk.build` returns None for any
other graph (residual adds, concatenations, a convolution without BatchNorm or ReLU...),
and the caller scores in fp32.
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from envs.proxies.folding import FoldedTwin

#: Quantized-kernel library: oneDNN (x86). On the development machine's AVX2 core a
#: batch of 128 images through the int8 trunk took 17.8 ms of CPU time on fashion-cnn and
#: 21.1 ms on fashion-vgg, against 35.7 and 50.4 ms through the fp32 folded twin (before
#: the pooling and first-convolution changes below); fbgemm's int8 was 1.0-1.3x fp32.
ENGINE = "onednn"

#: Largest weight magnitude after quantization. 63 (7 bits), not 127: without VNNI, x86
#: int8 kernels multiply uint8 activations by int8 weights in pairs summed in int16
#: (``vpmaddubsw``), which saturates above 32767; 255 * 63 * 2 stays below it. With
#: 127, a 3x3 convolution of large activations and weights erred by up to 30 output steps
#: on the development machine's AVX2 core (measured); with 63, within half a step.
WEIGHT_MAX = 63.0

_RELU_MODULES = (nn.ReLU,)
_RELU_FUNCTIONS = (F.relu, torch.relu)
#: Modules and functions that run on quantized tensors unchanged (same scale).
_PASS_MODULES = (nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity)
_PASS_MODULES_EVAL = (nn.Dropout,)
_PASS_FUNCTIONS = (
    torch.flatten,
    F.max_pool2d,
    F.adaptive_avg_pool2d,
    F.avg_pool2d,
    operator.getitem,
)


class Uint8MaxPool2x2(nn.Module):
    """2x2 max-pooling, stride 2, of a channels-last quint8 tensor, on its raw bytes.

    The same result as ``F.max_pool2d(q, 2)`` (max commutes with the monotone uint8
    code), but torch's quantized max-pool has no vectorised path for fewer than 32
    channels: on 128 x 16 x 28 x 28 it took 2.3 ms, this 0.2 ms (CPU time, measured).
    """

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """Pooled ``q`` (odd trailing rows and columns dropped, as max_pool2d does)."""
        _, c, h, w = q.shape
        if c >= 32 or not q.is_contiguous(memory_format=torch.channels_last):
            return F.max_pool2d(q, 2)  # torch's own is faster there (0.02 ms vs 0.07)
        # The quint8 codes as a uint8 tensor over the same storage (no copy).
        codes = torch.empty(0, dtype=torch.uint8, device=q.device).set_(
            q.untyped_storage(), q.storage_offset(), q.shape, q.stride()
        )
        u = codes.permute(0, 2, 3, 1)[:, : h // 2 * 2, : w // 2 * 2]
        rows = torch.maximum(u[:, 0::2], u[:, 1::2])
        out = torch.maximum(rows[:, :, 0::2], rows[:, :, 1::2])
        return torch._make_per_tensor_quantized_tensor(out, q.q_scale(), q.q_zero_point()).permute(
            0, 3, 1, 2
        )


def _is_max_pool_2x2(mod: nn.Module) -> bool:
    def pair(v: object) -> tuple:
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    return (
        isinstance(mod, nn.MaxPool2d)
        and pair(mod.kernel_size) == (2, 2)
        and pair(mod.stride) == (2, 2)
        and pair(mod.padding) == (0, 0)
        and pair(mod.dilation) == (1, 1)
        and not mod.ceil_mode
        and not mod.return_indices
    )


def int8_available() -> bool:
    """Whether this torch build has the quantized oneDNN kernels."""
    return ENGINE in torch.backends.quantized.supported_engines


@contextmanager
def _engine() -> Iterator[None]:
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        with warnings.catch_warnings():
            # torch marks quantized tensors deprecated (for torchao); they still run.
            warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
            warnings.filterwarnings("ignore", message=".*deprecated.*quantiz.*")
            yield
    finally:
        torch.backends.quantized.engine = prev


def _is_relu(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _RELU_MODULES)
    return node.op == "call_function" and node.target in _RELU_FUNCTIONS


class Int8Trunk:
    """int8 trunk of a :class:`FoldedTwin`: its graph up to the head, on quantized tensors.

    Attributes:
        module: the trunk (``torch.fx.GraphModule``): quint8 input -> fp32 head input.
        convs: ``(fused conv name in the twin, BatchNorm name)`` per quantized layer.
        head: name of the head module (not part of the trunk).
    """

    def __init__(
        self,
        module: fx.GraphModule,
        convs: list[tuple[str, str]],
        head: str,
        unfold: dict[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.convs = convs
        self.head = head
        #: ``F.unfold`` arguments when the first convolution runs as a 1x1 convolution
        #: over the input's patches (unfolded once, in :meth:`quantize_input`).
        self.unfold = unfold
        self.input_qparams: tuple[float, int] | None = None

    @classmethod
    def build(cls, twin: FoldedTwin, head: str, *, unfold_first: bool = True) -> Int8Trunk | None:
        """The int8 trunk of ``twin`` whose output feeds module ``head``; None if the
        graph has anything but the supported chain of layers, or no int8 kernels.

        ``unfold_first``: run a first convolution of at most 32 inputs per output (e.g.
        3x3 on one channel) as a 1x1 convolution over the input's patches, unfolded once
        by :meth:`quantize_input`: the same integer products, 2x faster on the development
        machine (a 3x3 convolution of one input channel has no fast int8 kernel).
        """
        if not int8_available():
            return None
        gm = copy.deepcopy(twin.module)
        graph = gm.graph
        modules = dict(gm.named_modules())
        bn_of = dict(twin.pairs)
        head_nodes = [n for n in graph.nodes if n.op == "call_module" and str(n.target) == head]
        if len(head_nodes) != 1 or not isinstance(modules.get(head), nn.Linear):
            return None
        head_node = head_nodes[0]
        convs: list[tuple[str, str]] = []
        unfold: dict[str, Any] | None = None
        replace: dict[str, nn.Module] = {}
        drop: list[fx.Node] = []
        seen_head = False
        with _engine():
            for node in graph.nodes:
                if node.op in ("placeholder", "get_attr") or node is head_node:
                    seen_head = seen_head or node is head_node
                    continue
                if node.op == "output":
                    break
                if seen_head:
                    return None  # anything after the head: not a plain classifier
                if len(node.users) > 1:
                    return None  # branches (residual adds, concatenations)
                if node.op == "call_module":
                    mod = modules[str(node.target)]
                    name = str(node.target)
                    if isinstance(mod, nn.Conv2d) and name in bn_of:
                        nxt = next(iter(node.users)) if node.users else None
                        if nxt is None or not _is_relu(nxt, modules):
                            return None
                        if mod.groups != 1 or mod.padding_mode != "zeros":
                            return None
                        patch = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
                        if (
                            unfold_first
                            and not convs
                            and node.args[0].op == "placeholder"
                            and patch <= 32
                        ):
                            # The first convolution reads the fixed input: unfold that once
                            # and run the convolution as a 1x1 one over the patches.
                            unfold = dict(
                                kernel_size=mod.kernel_size,
                                dilation=mod.dilation,
                                padding=mod.padding,
                                stride=mod.stride,
                            )
                            replace[name] = torch.ao.nn.intrinsic.quantized.ConvReLU2d(
                                patch, mod.out_channels, 1
                            )
                            convs.append((name, bn_of[name]))
                            drop.append(nxt)
                            continue
                        replace[name] = torch.ao.nn.intrinsic.quantized.ConvReLU2d(
                            mod.in_channels,
                            mod.out_channels,
                            mod.kernel_size,
                            stride=mod.stride,
                            padding=mod.padding,
                            dilation=mod.dilation,
                        )
                        convs.append((name, bn_of[name]))
                        drop.append(nxt)
                        continue
                    if _is_relu(node, modules) and node in drop:
                        continue
                    if _is_max_pool_2x2(mod):
                        replace[name] = Uint8MaxPool2x2()
                        continue
                    if isinstance(mod, _PASS_MODULES + _PASS_MODULES_EVAL):
                        continue
                    return None
                if node.op == "call_function":
                    if node.target in _RELU_FUNCTIONS and node in drop:
                        continue
                    if node.target in _PASS_FUNCTIONS:
                        continue
                    return None
                if node.op == "call_method" and node.target in ("flatten", "view", "reshape"):
                    continue
                return None
            if not convs:
                return None
            for node in drop:
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
            (feat,) = head_node.args
            with graph.inserting_before(head_node):
                deq = graph.call_method("dequantize", (feat,))
            out = next(n for n in graph.nodes if n.op == "output")
            if out.args[0] is not head_node:
                return None
            out.args = (deq,)
            graph.erase_node(head_node)
            for name, qmod in replace.items():
                parent, _, leaf = name.rpartition(".")
                setattr(gm.get_submodule(parent) if parent else gm, leaf, qmod)
            graph.eliminate_dead_code()
            graph.lint()
            module = fx.GraphModule(gm, graph).eval()
        return cls(module, convs, head, unfold)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (fp32 images) as quint8 with the trunk's input scale (set on first call
        from ``x``'s range; later calls reuse it: pass the largest set first)."""
        with _engine():
            if self.input_qparams is None:
                lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
                scale = max(hi - lo, 1e-8) / 255.0
                self.input_qparams = (scale, int(round(-lo / scale)))
            scale, zero = self.input_qparams
            q = torch.quantize_per_tensor(x, scale, zero, torch.quint8)
            if self.unfold is None:
                return q
            # Unfold the representable values (padding: real 0, the zero point) and
            # quantize them again: the same codes, one channel per patch position.
            n, _, h, w = x.shape
            k, d, p, st = (self.unfold[a] for a in ("kernel_size", "dilation", "padding", "stride"))
            out_hw = [
                (size + 2 * p[i] - d[i] * (k[i] - 1) - 1) // st[i] + 1
                for i, size in enumerate((h, w))
            ]
            cols = F.unfold(q.dequantize(), **self.unfold).reshape(n, -1, *out_hw)
            cols = cols.contiguous(memory_format=torch.channels_last)
            return torch.quantize_per_tensor(cols, scale, zero, torch.quint8)

    @torch.no_grad()
    def sync(self, twin: FoldedTwin, ranges: dict[str, float]) -> None:
        """Quantize ``twin``'s current folded weights into the trunk.

        ``ranges``: per BatchNorm name, the largest value its output (hence the ReLU's)
        reached on the calibration data; the layer's uint8 output covers ``[0, range]``.
        """
        with _engine():
            for conv_name, bn_name in self.convs:
                fused = twin.module.get_submodule(conv_name)
                q = self.module.get_submodule(conv_name)
                w = fused.weight.detach()
                if q.kernel_size == (1, 1) and w.shape[2:] != (1, 1):  # the unfolded first conv
                    w = w.reshape(w.shape[0], -1, 1, 1)
                wscale = (w.abs().amax(dim=(1, 2, 3)) / WEIGHT_MAX).clamp_min(1e-12).double()
                zeros = torch.zeros(w.shape[0], dtype=torch.long)
                qw = torch.quantize_per_channel(w, wscale, zeros, 0, torch.qint8)
                q.set_weight_bias(qw, fused.bias.detach())
                q.scale = max(float(ranges[bn_name]), 1e-6) / 255.0
                q.zero_point = 0

    def __call__(self, xq: torch.Tensor) -> torch.Tensor:
        """The head's fp32 input for quantized images ``xq`` (call under inference mode)."""
        with _engine():
            return self.module(xq)
