"""Least-squares re-fit of a pruned network's classifier head (label-free, closed form).

Pruning damages every layer; BatchNorm re-estimation repairs the statistics of the layers
followed by BatchNorm, and a short fine-tune would re-fit the rest. The classifier head
has no BatchNorm after it, and the damage there is the easiest for a fine-tune to undo:
its logits are linear in the features. Re-fitting the head's *kept* weights so that the
pruned network's logits match the dense network's on a few calibration images (ridge
towards the trained weights, masks respected) removes that fixable part of the damage,
so what an accuracy proxy still sees is the damage a fine-tune cannot undo. On
digits-cnn and resnet20 this raises the Kendall tau between the ``holdout`` proxy and the
fine-tuned accuracy (``bench/proxy_fidelity.py``).

The same routine runs in the ``holdout`` proxy and when the final pruned model is built,
so the exported network is the one the search scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


def refit_masked_linear(
    features: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor | None = None,
    *,
    ridge: float = 1e-2,
    max_iter: int = 64,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights and bias minimising ``mean ||X W^T + b - T||^2 + ridge * s * ||[W,b] - [W0,b0]||^2``.

    Only the entries ``mask`` keeps are free (the others stay 0); the ridge pulls towards
    the given ``weight``/``bias`` and is scaled by ``s``, the mean diagonal of the feature
    Gram matrix, so ``ridge`` is unitless. Every output row is an independent least-squares
    problem on its own support; they are solved together by batched conjugate gradients on
    the shared Gram matrix (exact after at most ``in_features + 1`` iterations; stops
    earlier at relative residual ``tol`` or ``max_iter``).

    Args:
        features: ``(N, in_features)`` inputs of the layer.
        targets: ``(N, out_features)`` wanted outputs.
        weight: ``(out_features, in_features)`` anchor and starting point.
        bias: ``(out_features,)`` or None (then no bias is fitted).
        mask: keep-mask shaped like ``weight`` (default: all kept).
        ridge: > 0; larger stays closer to the anchor.
        max_iter, tol: conjugate-gradient limits.

    Returns:
        ``(weight, bias)`` in the dtype of ``weight``; masked entries are exactly 0.
    """
    if features.dim() != 2 or targets.dim() != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            f"features (N, in) and targets (N, out) must share N, got {tuple(features.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if weight.shape != (targets.shape[1], features.shape[1]):
        raise ValueError(
            f"weight must be (out, in) = {(targets.shape[1], features.shape[1])}, "
            f"got {tuple(weight.shape)}"
        )
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    dt = torch.float64
    x = features.to(dt)
    w0 = weight.to(dt)
    keep = torch.ones_like(w0) if mask is None else (mask != 0).to(dt)
    if bias is not None:
        x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=dt, device=x.device)], 1)
        w0 = torch.cat([w0, bias.to(dt)[:, None]], 1)
        keep = torch.cat([keep, torch.ones(keep.shape[0], 1, dtype=dt, device=keep.device)], 1)
    n = x.shape[0]
    gram = x.T @ x / n
    reg = ridge * float(gram.diagonal().mean().clamp_min(1e-12))

    def op(w: torch.Tensor) -> torch.Tensor:
        # Each row's normal-equation operator restricted to its support.
        return ((w * keep) @ gram + reg * w) * keep

    rhs = ((targets.to(dt).T @ x) / n + reg * w0) * keep
    w = w0 * keep
    r = rhs - op(w)
    p = r.clone()
    rs = (r * r).sum(1)
    stop = (tol**2) * (rhs * rhs).sum(1).clamp_min(1e-30)
    for _ in range(max_iter):
        if bool((rs <= stop).all()):
            break
        ap = op(p)
        alpha = rs / (p * ap).sum(1).clamp_min(1e-30)
        w = w + alpha[:, None] * p
        r = r - alpha[:, None] * ap
        rs_new = (r * r).sum(1)
        p = r + (rs_new / rs.clamp_min(1e-30))[:, None] * p
        rs = rs_new
    w = w * keep
    if bias is None:
        return w.to(weight.dtype), None
    return w[:, :-1].to(weight.dtype).contiguous(), w[:, -1].to(bias.dtype).contiguous()


def _output_linear(model: nn.Module, x: torch.Tensor) -> str | None:
    """Name of the ``nn.Linear`` whose output is the model's output on ``x`` (None if none)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, name=name: outputs.__setitem__(name, o))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    ]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return next((name for name, o in outputs.items() if o is out), None)


@dataclass(frozen=True)
class HeadRefit:
    """What a head re-fit needs, captured once from the dense network.

    Build it with :meth:`from_model`; :meth:`apply` then re-fits any pruned copy of that
    network in place.

    Attributes:
        head: module name of the output ``nn.Linear``.
        images: calibration batches (the BatchNorm calibration batches).
        targets: the dense network's logits on ``images`` (concatenated).
        weight, bias: the head's trained parameters (the ridge anchor).
        ridge: see :func:`refit_masked_linear`.
    """

    head: str
    images: tuple[torch.Tensor, ...]
    targets: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    ridge: float = 1e-2

    @classmethod
    def from_model(
        cls, model: nn.Module, images: Sequence[torch.Tensor], *, ridge: float = 1e-2
    ) -> HeadRefit | None:
        """Capture the dense ``model``'s head and logits; None if its output is no Linear.

        The model is evaluated in eval mode as it is (call before pruning it).
        """
        if not images:
            raise ValueError("HeadRefit needs at least one calibration batch")
        was_training = model.training
        model.eval()
        try:
            head = _output_linear(model, images[0])
            if head is None:
                return None
            with torch.no_grad():
                targets = torch.cat([model(x) for x in images])
        finally:
            model.train(was_training)
        linear = model.get_submodule(head)
        weight = getattr(linear, "weight_orig", linear.weight).detach().clone()
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(head, tuple(images), targets.detach(), weight, bias, ridge)

    def apply(self, model: nn.Module) -> nn.Module:
        """Re-fit ``model``'s head in place (eval mode; masks kept) and return the model.

        ``model`` is a pruned copy of the network this was captured from, on any device,
        with its BatchNorm statistics already re-estimated. The head's mask (if pruned
        through ``torch.nn.utils.prune``) is respected and stays installed.
        """
        linear = model.get_submodule(self.head)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{self.head!r} is a {type(linear).__name__}, not the Linear head")
        dev = linear.weight.device
        feats: list[torch.Tensor] = []
        handle = linear.register_forward_hook(lambda _m, i, _o: feats.append(i[0].detach()))
        model.eval()
        try:
            with torch.no_grad():
                for x in self.images:
                    model(x.to(dev))
        finally:
            handle.remove()
        mask = getattr(linear, "weight_mask", None)
        weight, bias = refit_masked_linear(
            torch.cat(feats).flatten(1),
            self.targets.to(dev),
            self.weight.to(dev),
            None if self.bias is None else self.bias.to(dev),
            mask,
            ridge=self.ridge,
        )
        with torch.no_grad():
            getattr(linear, "weight_orig", linear.weight).copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        return model
