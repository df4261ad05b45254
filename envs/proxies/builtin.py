"""Accuracy proxies: how a search scores a set of keep-masks without a full fine-tune.

- ``holdout`` (default): accuracy on the search-holdout split after BatchNorm statistics
  are re-estimated on a few fixed training batches (EagleEye's adaptive BN) and the
  classifier head is re-fitted to the dense network's logits on them (``envs.proxies.headfit``).
- ``finetune``: a short fine-tune with the masks held fixed, then the same score.
- ``weight-energy``: data-free at evaluation time; the share of each layer's L2 weight
  energy the masks keep, weighted by a per-layer sensitivity estimated once.

All proxies keep their own working copy of the model (the workload's model is never
touched) and apply masks through :class:`pruning.apply.MaskSwitcher`, so the prune
reparametrisation is installed once and later evaluations only copy mask buffers. The
holdout is scored through a twin of that copy with BatchNorm folded into the
convolutions (:mod:`envs.proxies.folding`): the same predictions, about 10% less time.

``holdout`` (and ``holdout-energy``) evaluate in one of two precisions: ``int8`` (the
default) scores through an int8 copy of the folded twin (:mod:`envs.proxies.quantized`),
re-estimates BatchNorm statistics on fewer images and races (stops scoring a policy
that is clearly below the best so far); ``fp32`` (``precision="fp32"``) is the full
evaluation as it was before. Networks the int8 path does not cover (residual adds, a
convolution without BatchNorm...) and GPUs are scored in fp32 either way.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from core.params import Schema
from envs.proxies.base import PROXIES, AccuracyProxy
from envs.proxies.folding import FoldedTwin
from envs.proxies.headfit import HeadRefit, _output_linear, refit_masked_linear
from envs.proxies.quantized import Int8Trunk
from envs.workloads.base import Workload
from envs.workloads.evaluation import (
    bn_calibration_batches,
    dataset_tensors,
    finetune,
    reestimate_batchnorm,
    resolve_device,
)
from pruning.apply import MaskSwitcher
from pruning.inspect import inspect_model

DEFAULT_PROXY = "holdout"

#: Arithmetic of the ``holdout`` proxy's scoring pass: ``int8`` (default: the folded
#: trunk quantized, see ``envs.proxies.quantized``; fp32 where a network or device has no int8
#: path) or ``fp32`` (the full evaluation, exactly as before int8 existed).
PRECISIONS = ("int8", "fp32")
DEFAULT_PRECISION = "int8"
#: Calibration images the ``int8`` evaluation re-estimates BatchNorm statistics on (of the
#: ``bn_batches * bn_batch_size`` it re-fits the head on); ``fp32`` uses all of them.
FAST_BN_IMAGES = 16
#: Racing (``int8`` evaluation): after ``RACE_MIN_IMAGES`` holdout images, scoring stops
#: once a policy's accuracy is more than ``RACE_Z`` standard errors below the best full
#: score so far; its score is then the accuracy on the images seen, an unbiased estimate of
#: the full score (the holdout order is shuffled once).
RACE_Z = 4.0
RACE_MIN_IMAGES = 640


#: Holdout images per forward pass when scoring. Small batches keep a layer's activations
#: in cache: on fashion-cnn (28x28, channels-last, one thread) 1,000 images took 108 ms in
#: batches of 64-128 and 360 ms in one batch of 1,000 (measured).
SCORE_BATCH = 128


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None: leave the setting alone)."""
    if n is None:
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class _WorkingCopyProxy(AccuracyProxy):
    """Shared machinery: a working copy on the device, cached holdout and BN batches.

    Args:
        workload: the workload to score masks on.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; default: the workload's
            ``meta["device"]`` (CPU if absent).
        bn_batches: number of training batches for BatchNorm re-estimation (0 disables
            it: the raw pruned accuracy with the trained statistics).
        bn_batch_size: images per BN batch.
        holdout_limit: score on at most this many holdout images (default: the workload's
            ``score_limit``, else all).
        threads: intra-op CPU threads during evaluation (default: leave torch's setting).
            On a busy machine, 1 avoids the slow-downs of contended thread pools.
        seed: picks the fixed BN batches (the same every evaluation).
    """

    def __init__(
        self,
        workload: Workload,
        *,
        device: str | None = None,
        bn_batches: int = 2,
        bn_batch_size: int = 128,
        holdout_limit: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(workload)
        if bn_batches < 0 or bn_batch_size < 2:
            raise ValueError(
                f"bn_batches must be >= 0 and bn_batch_size >= 2, got {bn_batches} and "
                f"{bn_batch_size}"
            )
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.device = resolve_device(device or workload.meta.get("device", "cpu"))
        self.threads = threads
        self.bn_batches = bn_batches
        self.model = copy.deepcopy(workload.model).to(self.device).eval()
        # NHWC convolutions are about 1.4-2x faster on CPU for these small nets (measured).
        self._fmt = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        self.model.to(memory_format=self._fmt)
        #: Inference twin with BatchNorm folded into the convolutions, used to score
        #: (None: the network cannot be traced or has no Conv -> BatchNorm pair).
        self._twin = FoldedTwin.build(self.model, memory_format=self._fmt)
        self.switcher = MaskSwitcher(self.model)
        # Trained weights and BN statistics, to restore the working copy (fine-tuning).
        self._trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if holdout_limit is None:
            holdout_limit = workload.score_limit
        hx, hy = dataset_tensors(workload.holdout, limit=holdout_limit, device=self.device)
        self._holdout = (self._format(hx), hy)
        batches = bn_calibration_batches(
            workload.train, n_batches=bn_batches, batch_size=bn_batch_size, seed=seed
        )
        self._bn = [self._format(x.to(self.device)) for x in batches]
        #: The batches BatchNorm statistics are re-estimated on (``holdout`` may use fewer
        #: images for them than for its head re-fit).
        self._bn_stats = self._bn
        #: Head re-fit applied after BN re-estimation (None: score the network as it is).
        self._head: HeadRefit | None = None

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self._fmt) if x.dim() == 4 else x

    def _restore(self) -> None:
        """Copy the trained weights back into the working copy (into ``*_orig`` if pruned)."""
        params = dict(self.model.named_parameters())
        buffers = dict(self.model.named_buffers())
        with torch.no_grad():
            for key, value in self._trained.items():
                target = params.get(key, params.get(key + "_orig", buffers.get(key)))
                assert target is not None, f"working copy lost {key}"
                target.copy_(value)

    def _score(self) -> float:
        """Holdout accuracy of the working copy as it is (BN re-estimated if enabled)."""
        if self.bn_batches:
            reestimate_batchnorm(self.model, self._bn_stats)
        if self._head is not None:
            self._head.apply(self.model)
        self.model.eval()
        net = self.model
        if self._twin is not None:
            self._twin.sync(self.model)
            net = self._twin
        x, y = self._holdout
        correct = 0
        with torch.inference_mode():
            for start in range(0, x.shape[0], SCORE_BATCH):
                pred = net(x[start : start + SCORE_BATCH]).argmax(1)
                correct += int((pred == y[start : start + SCORE_BATCH]).sum())
        return correct / int(y.shape[0])


@PROXIES.register("holdout")
class HoldoutProxy(_WorkingCopyProxy):
    """Holdout accuracy after BatchNorm re-estimation (EagleEye's adaptive BN) and a head re-fit.

    Per evaluation: swap in the masks, reset every BN layer's running statistics and
    re-estimate them as a cumulative average over ``bn_batches`` fixed training batches
    (forward in train mode, no gradients), re-fit the classifier head's kept weights to
    the dense network's logits on the same batches (:mod:`envs.proxies.headfit`; closed-form,
    label-free), then score the search-holdout split in inference mode. Pruning shifts
    every later layer's activation statistics; the re-estimated statistics remove most of
    that shift, and the head re-fit removes the damage a fine-tune undoes first, which is
    why this score tracks the accuracy after fine-tuning far better than the raw pruned
    accuracy (``bn_batches=0, refit_head=False``). Holdout and BN batches are cached
    tensors on the device.

    With ``precision="int8"`` (the default) the same evaluation runs cheaper: BatchNorm
    statistics are re-estimated (in fp32) on the first ``bn_images`` calibration images
    only, and that pass also records each BatchNorm output's largest value; the folded
    network up to the head then runs in int8 (:class:`envs.proxies.quantized.Int8Trunk`: weights
    per-channel int8, activations uint8 over those ranges) on all calibration images, the
    head is re-fitted on those int8 features and applied in fp32, and the holdout is
    scored in int8 with racing: in a once-shuffled order, scoring stops after at least
    ``RACE_MIN_IMAGES`` images once the accuracy so far is ``race`` standard errors below
    the best full score this proxy has seen; the score is then the accuracy on the images
    seen (an unbiased estimate, noisier than the full one). On fashion-cnn and
    fashion-vgg it ranked random feasible policies with Kendall tau above 0.9 against
    ``precision="fp32"`` at about a third of its time (``bench/env_speed.py``).

    Args:
        refit_head: re-fit the output ``nn.Linear`` (skipped when the network's output
            is not a Linear layer's). Needs ``bn_batches >= 1``.
        precision: ``"int8"`` (default) or ``"fp32"`` (the full evaluation). int8 applies
            on CPU to chain networks (Conv + BatchNorm + ReLU, pooling, a Linear head);
            others are scored in fp32 whatever is asked.
        bn_images: calibration images BatchNorm statistics are re-estimated on (None:
            ``FAST_BN_IMAGES`` with int8, all ``bn_batches * bn_batch_size`` with fp32).
        race: racing's confidence in standard errors, 0 to score every holdout image
            (None: ``RACE_Z`` with int8, 0 with fp32); int8 evaluation only.
        Other arguments: see ``_WorkingCopyProxy``.
    """

    name = "holdout"

    def __init__(
        self,
        workload: Workload,
        *,
        refit_head: bool = True,
        precision: str = DEFAULT_PRECISION,
        bn_images: int | None = None,
        race: float | None = None,
        device: str | None = None,
        bn_batches: int = 2,
        bn_batch_size: int = 128,
        holdout_limit: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        if bn_images is not None and bn_images < 2:
            raise ValueError(f"bn_images must be >= 2 or None, got {bn_images}")
        if race is not None and not race >= 0:
            raise ValueError(f"race must be >= 0 (0: off) or None, got {race}")
        if refit_head and bn_batches < 1:
            raise ValueError(
                f"refit_head=True needs calibration batches (bn_batches >= 1), got "
                f"bn_batches={bn_batches}; pass refit_head=False for the raw pruned accuracy"
            )
        if precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {precision!r}; valid choices: {', '.join(PRECISIONS)}"
            )
        super().__init__(
            workload,
            device=device,
            bn_batches=bn_batches,
            bn_batch_size=bn_batch_size,
            holdout_limit=holdout_limit,
            threads=threads,
            seed=seed,
        )
        self.precision = precision
        self.seed = seed
        if bn_images is None:
            bn_images = FAST_BN_IMAGES if precision == "int8" else None
        if bn_images is not None and self._bn:
            # BatchNorm statistics from the first ``bn_images`` calibration images, as
            # one batch; the head re-fit still uses all of them.
            self._bn_stats = [self._format(torch.cat(self._bn)[:bn_images])]
        self.bn_images = sum(b.shape[0] for b in self._bn_stats)
        #: Racing's confidence (standard errors; 0: every holdout image is scored).
        self.race = float(RACE_Z if race is None and precision == "int8" else race or 0.0)
        #: Best accuracy so far scored on every holdout image (racing's reference).
        self._best = -1.0
        #: Holdout images the last evaluation scored (fewer than all: stopped by racing).
        self.last_images = 0
        #: The int8 trunk the holdout is scored through (None: fp32, as asked, or where
        #: the device, the network or the settings give int8 no path).
        self._int8: Int8Trunk | None = None
        with torch_threads(threads):
            if refit_head:
                self._head = HeadRefit.from_model(self.model, self._bn)
            if precision == "int8":
                self._build_int8()

    def _build_int8(self) -> None:
        """Set up int8 scoring where it applies: CPU, a folded twin with a supported chain
        of layers, a Linear head, BatchNorm re-estimation on (it measures the ranges)."""
        if self.device.type != "cpu" or self._twin is None or not self.bn_batches:
            return
        head = (
            self._head.head if self._head is not None else _output_linear(self.model, self._bn[0])
        )
        if head is None:
            return
        trunk = Int8Trunk.build(self._twin, head)
        if trunk is None:
            return
        x, _ = self._holdout
        # One input scale for holdout and calibration images (fixed data: quantized once).
        both = trunk.quantize_input(torch.cat([x, *self._bn]))
        # Shuffled once (seeded) so that racing's first images are a uniform random subset.
        order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.seed))
        self._holdout_q = both[: x.shape[0]][order]
        self._holdout_y = self._holdout[1][order]
        sizes = [b.shape[0] for b in self._bn]
        self._bn_q = list(both[x.shape[0] :].split(sizes))
        self._bn_names = [
            (name, m)
            for name, m in self.model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        self._int8 = trunk

    def _score_int8(self, *, race: bool = True) -> float:
        """Holdout accuracy through the int8 trunk (masks already set; ``race``: the
        evaluation may stop early and sets the racing reference when it does not).

        BatchNorm statistics are re-estimated in fp32 as in :meth:`_score`, and the same
        pass records each BatchNorm output's largest value: the ranges the trunk's uint8
        activations cover. The head is re-fitted on the trunk's own features of the
        calibration images and applied in fp32.
        """
        assert self._int8 is not None
        ranges: dict[str, float] = {}

        def record(name: str, _m: Any, _i: Any, out: torch.Tensor) -> None:
            ranges[name] = max(ranges.get(name, 0.0), float(out.amax()))

        hooks = [
            m.register_forward_hook(functools.partial(record, name)) for name, m in self._bn_names
        ]
        try:
            reestimate_batchnorm(self.model, self._bn_stats)
        finally:
            for h in hooks:
                h.remove()
        self._twin.sync(self.model)
        self._int8.sync(self._twin, ranges)
        head = self.model.get_submodule(self._int8.head)
        with torch.inference_mode():
            if self._head is not None:
                feats = torch.cat([self._int8(q) for q in self._bn_q])
                weight, bias = refit_masked_linear(
                    feats,
                    self._head.targets,
                    self._head.weight,
                    self._head.bias,
                    getattr(head, "weight_mask", None),
                    ridge=self._head.ridge,
                )
            else:
                twin_head = self._twin.module.get_submodule(self._int8.head)
                weight, bias = twin_head.weight, twin_head.bias
            xq, y = self._holdout_q, self._holdout_y
            n = int(y.shape[0])
            correct = seen = 0
            for start in range(0, n, SCORE_BATCH):
                logits = F.linear(self._int8(xq[start : start + SCORE_BATCH]), weight, bias)
                correct += int((logits.argmax(1) == y[start : start + SCORE_BATCH]).sum())
                seen = min(n, start + SCORE_BATCH)
                if race and seen < n and self._clearly_below(correct, seen, n):
                    break
        self.last_images = seen
        if race and seen == n:
            self._best = max(self._best, correct / n)
        return correct / seen

    def new_search(self) -> None:
        """Forget racing's reference: a proxy reused for another search (a benchmark
        scoring several methods with one proxy) races each against its own best only."""
        self._best = -1.0

    def note_scores(self, scores: Iterable[float]) -> None:
        """Count scores this proxy returned before (a resumed search's journal) towards
        racing's reference: the best of them, as if just measured (a raced score is below
        the reference it raced against, so the best is always a full one)."""
        self._best = max([self._best, *(float(s) for s in scores)])

    def _clearly_below(self, correct: int, seen: int, n: int) -> bool:
        """Racing: whether the accuracy on the first ``seen`` of ``n`` holdout images
        (a uniform random subset: the order is shuffled once) is below the best full
        score so far by more than ``race`` standard errors (finite-population corrected)."""
        if not self.race or seen < RACE_MIN_IMAGES or self._best < 0:
            return False
        acc = correct / seen
        var = max(acc * (1 - acc), 1.0 / seen) / seen * (1 - seen / n)
        return acc + self.race * math.sqrt(var) < self._best

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """Holdout accuracy in [0, 1] of the network with ``masks``."""
        with torch_threads(self.threads):
            self.switcher.set(masks)
            if self._int8 is None:
                return self._score()
            # The dense network is no policy: it neither races nor sets the reference.
            dense = all(bool(m.all()) for m in masks.values())
            return self._score_int8(race=not dense)


@PROXIES.register("finetune")
class FinetuneProxy(_WorkingCopyProxy):
    """Holdout accuracy after a short fine-tune with the masks held fixed.

    Per evaluation: restore the trained weights and BN statistics, swap in the masks,
    run ``steps`` SGD steps on the training split (the prune reparametrisation keeps
    masked weights at zero: their gradient is zero), re-estimate BatchNorm statistics
    (unless ``bn_batches=0``) and score the holdout. Deterministic: the batches are drawn
    with a fixed seed. About ``steps`` training steps slower than ``holdout``.

    Args:
        steps: SGD steps per evaluation.
        lr, batch_size, momentum, weight_decay: the fine-tune's SGD settings.
        distill: distil from the dense model (Hinton's KD, weight 0.9 at temperature 4,
            as recovery does) besides the labels' cross-entropy.
        Other arguments: see ``holdout``.
    """

    name = "finetune"

    def __init__(
        self,
        workload: Workload,
        *,
        steps: int = 20,
        lr: float = 0.01,
        batch_size: int = 64,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        distill: bool = False,
        device: str | None = None,
        bn_batches: int = 2,
        bn_batch_size: int = 128,
        holdout_limit: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if lr <= 0 or batch_size < 2:
            raise ValueError(f"lr must be > 0 and batch_size >= 2, got {lr} and {batch_size}")
        super().__init__(
            workload,
            device=device,
            bn_batches=bn_batches,
            bn_batch_size=bn_batch_size,
            holdout_limit=holdout_limit,
            threads=threads,
            seed=seed,
        )
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.distill = distill
        # The dense teacher lives where the student trains (the workload's model is on CPU).
        self.teacher = copy.deepcopy(workload.model).to(self.device).eval() if distill else None
        self.seed = seed

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """Holdout accuracy in [0, 1] after fine-tuning the masked network."""
        with torch_threads(self.threads):
            self._restore()
            self.switcher.set(masks)
            finetune(
                self.model,
                self.workload.train,
                steps=self.steps,
                lr=self.lr,
                batch_size=self.batch_size,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                seed=self.seed,
                device=self.device,
                teacher=self.teacher,
            )
            return self._score()


@PROXIES.register("weight-energy")
class WeightEnergyProxy(AccuracyProxy):
    """Data-free score: the share of each layer's L2 weight energy kept, sensitivity-weighted.

    With ``e_l = ||W_l * M_l||^2 / ||W_l||^2`` the energy layer ``l`` keeps, the score is
    ``base * exp(-sum_l s_l * (1 - e_l) / (1 - r_l))``: a first-order, additive model of
    the loss increase, where pruning layer ``l`` alone to its reference energy ``r_l``
    costs ``s_l`` nats, linear in the energy lost, and layers add up independently.

    Sensitivity (``sensitivity=``), estimated once at construction:

    - ``"holdout"`` (default): each prunable layer is magnitude-pruned alone to
      ``ref_density`` (unstructured); ``s_l`` is the resulting increase of the holdout
      cross-entropy after BatchNorm re-estimation (clipped at 0), ``r_l`` the energy that
      mask keeps, and ``base`` the dense holdout accuracy. One holdout pass per layer.
    - ``"params"``: no data at all: ``s_l`` is the layer's share of the prunable
      parameters, ``r_l = 0``, ``base = 1``.

    Evaluation reads only the masks and the cached weights: microseconds per layer. Mask
    keys that are not a prunable layer's weight (e.g. BatchNorm masks a channel scheme
    adds) do not enter the score; the pruned convolution's energy already reflects them.
    """

    name = "weight-energy"
    SENSITIVITIES = ("holdout", "params")

    def __init__(
        self,
        workload: Workload,
        *,
        sensitivity: str = "holdout",
        ref_density: float = 0.2,
        device: str | None = None,
        bn_batches: int = 2,
        bn_batch_size: int = 128,
        holdout_limit: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(workload)
        if sensitivity not in self.SENSITIVITIES:
            raise ValueError(
                f"unknown sensitivity {sensitivity!r}; valid choices: "
                f"{', '.join(self.SENSITIVITIES)}"
            )
        if not 0.0 < ref_density < 1.0:
            raise ValueError(f"ref_density must be in (0, 1), got {ref_density}")
        self.sensitivity = sensitivity
        self.ref_density = ref_density
        named = dict(workload.model.named_parameters())
        layers = inspect_model(workload.model, workload.example_input)
        keys = [spec.name + ".weight" for spec in layers if spec.name + ".weight" in named]
        self._weights = {k: named[k].detach().float().cpu() ** 2 for k in keys}
        self._energy = {k: float(w.sum()) for k, w in self._weights.items()}
        total = sum(w.numel() for w in self._weights.values())
        if sensitivity == "params":
            self.base = 1.0
            self.sens = {k: w.numel() / total for k, w in self._weights.items()}
            self.ref = dict.fromkeys(keys, 0.0)
            return
        with torch_threads(threads):
            self.base, self.sens, self.ref = self._estimate(
                workload,
                device=device,
                bn_batches=bn_batches,
                bn_batch_size=bn_batch_size,
                holdout_limit=holdout_limit,
                seed=seed,
            )

    def _magnitude_mask(self, key: str) -> torch.Tensor:
        sq = self._weights[key].flatten()
        keep = max(1, round(self.ref_density * sq.numel()))
        mask = torch.zeros_like(sq, dtype=torch.bool)
        mask[torch.topk(sq, keep).indices] = True
        return mask.view_as(self._weights[key])

    def _estimate(
        self, workload: Workload, **kwargs: Any
    ) -> tuple[float, dict[str, float], dict[str, float]]:
        """Dense holdout accuracy and, per layer, the loss increase when pruned alone."""
        scorer = HoldoutProxy(workload, precision="fp32", **kwargs)  # its model, in fp32
        x, y = scorer._holdout

        def loss_and_acc(masks: dict[str, torch.Tensor]) -> tuple[float, float]:
            scorer.switcher.set(masks)
            if scorer.bn_batches:
                reestimate_batchnorm(scorer.model, scorer._bn)
            with torch.inference_mode():
                logits = torch.cat([scorer.model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
            return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

        loss0, acc0 = loss_and_acc({})
        sens, ref = {}, {}
        for key in self._weights:
            mask = self._magnitude_mask(key)
            loss, _ = loss_and_acc({key: mask})
            sens[key] = max(0.0, loss - loss0)
            ref[key] = self._kept(key, mask)
        return acc0, sens, ref

    def _kept(self, key: str, mask: torch.Tensor) -> float:
        e = self._energy[key]
        return float((self._weights[key] * mask.to(torch.bool).cpu()).sum()) / e if e > 0 else 1.0

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """``base * exp(-sum_l s_l (1 - e_l) / (1 - r_l))`` for the masks, in [0, 1]."""
        unknown = [k for k in masks if k not in self._weights]
        named = dict(self.workload.model.named_parameters())
        bad = [k for k in unknown if k not in named]
        if bad:
            raise KeyError(
                f"mask keys {bad} are not parameters of {self.workload.name!r}; prunable "
                f"weights: {', '.join(self._weights)}"
            )
        penalty = 0.0
        for key, mask in masks.items():
            if key not in self._weights:
                continue
            if tuple(mask.shape) != tuple(self._weights[key].shape):
                raise ValueError(
                    f"mask for {key!r} has shape {tuple(mask.shape)}, parameter has "
                    f"{tuple(self._weights[key].shape)}"
                )
            lost = 1.0 - self._kept(key, mask)
            penalty += self.sens[key] * lost / max(1.0 - self.ref[key], 1e-6)
        return self.base * math.exp(-penalty)


@PROXIES.register("holdout-energy")
class HoldoutEnergyProxy(AccuracyProxy):
    """``holdout`` blended with ``weight-energy``: ``(h + w * e) / (1 + w)``.

    Near the best policies a search finds, the holdout score's ranking is noisy (1,000
    images resolve about a point); the data-free weight-energy score errs differently, so
    the blend ranks them better. Measured on fashion-cnn (``bench/proxy_fidelity.py``):
    ``energy_weight`` chosen on random policies, then tested on the search's best
    policies (see the README). The score stays accuracy-like, in [0, 1]; it is not the
    holdout accuracy itself.

    Args:
        energy_weight: ``w`` (>= 0; 0 is ``holdout``).
        sensitivity: of the weight-energy part (see ``WeightEnergyProxy``).
        Other arguments: see ``HoldoutProxy``.
    """

    name = "holdout-energy"

    def __init__(
        self,
        workload: Workload,
        *,
        energy_weight: float = 1.0,
        sensitivity: str = "holdout",
        refit_head: bool = True,
        precision: str = DEFAULT_PRECISION,
        device: str | None = None,
        bn_batches: int = 2,
        bn_batch_size: int = 128,
        holdout_limit: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(workload)
        if not energy_weight >= 0.0:
            raise ValueError(f"energy_weight must be >= 0, got {energy_weight}")
        self.energy_weight = float(energy_weight)
        shared = dict(
            device=device,
            bn_batches=bn_batches,
            bn_batch_size=bn_batch_size,
            holdout_limit=holdout_limit,
            threads=threads,
            seed=seed,
        )
        self.holdout = HoldoutProxy(workload, refit_head=refit_head, precision=precision, **shared)
        self.energy = WeightEnergyProxy(workload, sensitivity=sensitivity, **shared)

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """The blended score in [0, 1] of the network with ``masks``."""
        w = self.energy_weight
        return (self.holdout.evaluate(masks) + w * self.energy.evaluate(masks)) / (1.0 + w)


def get_proxy(name: str = DEFAULT_PROXY, *, workload: Workload, **params: Any) -> AccuracyProxy:
    """Build accuracy proxy ``name`` bound to ``workload``.

    ``params`` are the proxy's keyword arguments (``bn_batches``, ``steps``,
    ``sensitivity``...); an unknown one, or one of the wrong type, raises ``TypeError``
    naming the valid ones (``check_proxy_params``).
    """
    factory = PROXIES.factory(name)
    try:
        checked = check_proxy_params(name, params)
    except ValueError as exc:  # a call with wrong keywords, as Python itself reports it
        raise TypeError(str(exc)) from None
    return factory(workload=workload, **checked)


def proxy_schema(name: str) -> Schema:
    """The parameters of proxy ``name``: its keywords (``workload`` aside), typed by their
    defaults (the proxy checks their ranges). ``KeyError`` if the name is unknown."""
    return Schema.from_signature(PROXIES.factory(name), skip=("workload",))


def check_proxy_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of proxy ``name`` normalised; ``ValueError`` for one it does not take
    (naming the valid ones) or one whose type differs from its default (``steps=abc``)."""
    return proxy_schema(name).check(
        params,
        owner=f"proxy {name!r}",
        label=lambda key: f"proxy parameter {key!r} of {name!r}",
        partial=True,
    )


#: Parameters whose default a search records in its config even when not given: the
#: ``holdout`` proxy's precision changed default (fp32 to int8), so a stored config says
#: which evaluation scored the run.
RECORDED_DEFAULTS = ("precision",)


def resolved_proxy_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the defaults of ``RECORDED_DEFAULTS`` that proxy ``name`` takes
    filled in (an unknown proxy: ``params`` as they are; its name is refused elsewhere).

    ``ValueError`` for a precision that is not one of ``PRECISIONS``.
    """
    out = dict(params)
    if name not in PROXIES.names():
        return out
    schema = proxy_schema(name)
    for key in RECORDED_DEFAULTS:
        if key in schema and key not in out:
            out[key] = schema.default(key)
    if "precision" in out and "precision" in schema and out["precision"] not in PRECISIONS:
        raise ValueError(
            f"unknown precision {out['precision']!r} for proxy {name!r}; valid choices: "
            f"{', '.join(PRECISIONS)}"
        )
    return out


def list_proxies() -> list[str]:
    """Names of all registered accuracy proxies (``holdout`` is the default)."""
    return PROXIES.names()
