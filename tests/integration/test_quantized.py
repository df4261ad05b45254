"""The int8 trunk of the holdout proxy (envs.proxies.quantized)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from envs.proxies.folding import FoldedTwin
from envs.proxies.quantized import ENGINE, WEIGHT_MAX, Int8Trunk, Uint8MaxPool2x2, int8_available
from envs.workloads.base import Workload

pytestmark = pytest.mark.skipif(not int8_available(), reason="no quantized oneDNN kernels")


def _quint8(x: torch.Tensor, scale: float = 0.02, zero: int = 3) -> torch.Tensor:
    return torch.quantize_per_tensor(
        x.contiguous(memory_format=torch.channels_last), scale, zero, torch.quint8
    )


@pytest.mark.parametrize("shape", [(4, 16, 28, 28), (3, 5, 7, 9), (2, 64, 7, 7)])
def test_uint8_max_pool_equals_torchs(shape: tuple[int, ...]) -> None:
    q = _quint8(torch.rand(*shape) * 4)
    ours, theirs = Uint8MaxPool2x2()(q), F.max_pool2d(q, 2)
    assert torch.equal(ours.int_repr(), theirs.int_repr())
    assert (ours.q_scale(), ours.q_zero_point()) == (theirs.q_scale(), theirs.q_zero_point())


def test_seven_bit_weights_do_not_saturate() -> None:
    # Worst case for x86 int8 kernels without VNNI: large activations times the largest
    # weights, summed in int16 pairs. With WEIGHT_MAX the result stays exact.
    from torch.ao.nn.quantized import Conv2d

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = ENGINE
    try:
        x = _quint8(torch.rand(2, 32, 5, 5) * 5, scale=0.02, zero=0)
        w = torch.sign(torch.randn(8, 32, 3, 3))
        conv = Conv2d(32, 8, 3, padding=1)
        scale = torch.full((8,), 1 / WEIGHT_MAX, dtype=torch.double)
        qw = torch.quantize_per_channel(w, scale, torch.zeros(8, dtype=torch.long), 0, torch.qint8)
        conv.set_weight_bias(qw, None)
        ref = F.conv2d(x.dequantize(), w, padding=1)
        conv.scale, conv.zero_point = float(ref.abs().max()) / 120, 128
        with torch.inference_mode():
            err = (conv(x).dequantize() - ref).abs().max()
        assert err <= conv.scale  # within one output step
    finally:
        torch.backends.quantized.engine = prev


def test_int8_trunk_tracks_the_fp32_twin(digits: Workload) -> None:
    from envs.proxies.headfit import HeadRefit
    from envs.workloads.evaluation import bn_calibration_batches, reestimate_batchnorm

    model = digits.model
    x = torch.cat(bn_calibration_batches(digits.train, n_batches=1, batch_size=64))
    twin = FoldedTwin.build(model)
    head = HeadRefit.from_model(model, [x]).head
    plain, unfolded = Int8Trunk.build(twin, head, unfold_first=False), Int8Trunk.build(twin, head)
    assert plain is not None and unfolded is not None
    assert plain.unfold is None and unfolded.unfold is not None
    # Activation ranges as the proxy measures them: each BatchNorm output's largest value.
    work = __import__("copy").deepcopy(model)
    ranges: dict[str, float] = {}
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, o, n=n: ranges.__setitem__(n, max(ranges.get(n, 0.0), float(o.amax())))
        )
        for n, m in work.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    reestimate_batchnorm(work, [x])
    for h in hooks:
        h.remove()
    twin.sync(work)
    for trunk in (plain, unfolded):
        trunk.sync(twin, ranges)
    feats = []
    twin.module.get_submodule(head).register_forward_hook(lambda _m, i, _o: feats.append(i[0]))
    with torch.inference_mode():
        twin(x)
        a = plain(plain.quantize_input(x))
        b = unfolded(unfolded.quantize_input(x))
    # The unfolded first convolution computes the same integers.
    assert torch.equal(a, b)
    rel = (a - feats[0]).norm() / feats[0].norm()
    assert rel < 0.05


def test_int8_trunk_refuses_graphs_it_cannot_run(residual_workload: Workload) -> None:
    twin = FoldedTwin.build(residual_workload.model)
    assert twin is not None and Int8Trunk.build(twin, "fc") is None
