"""Channel pruning with GPU-aligned channel counts (Radu et al.; Torch-Pruning groups)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from hwmodels import LayerSpec
from pruning.base import SCHEMES
from pruning.dependency import (
    ChannelPlan,
    channel_plan,
    complete_channel_masks,
    layers_by_group,
    named_params,
    structure_key,
)
from pruning.schemes._common import (
    LeveledScheme,
    check_positive_int,
    magnitude,
    to_torch,
    top_masks,
)

NORMS: tuple[str, ...] = ("l1", "l2")


class ChannelScheme(LeveledScheme):
    """Remove whole output channels, keeping a multiple of ``round_to`` of them.

    Channels are ranked by the L1 (or L2) norm of their weights; the kept count is a
    multiple of ``round_to`` (tensor-core alignment, from the hardware's
    ``channel_multiple``; default 8) or the full count. Levels are ``c / Cout``; a layer with
    ``Cout <= round_to`` has the single level 1.0. Masks are nested as the density falls.
    Linear layers lose output features, 1x1 and depthwise convs output channels: the same
    rule everywhere. Index format: the kept channel indices (the layer becomes smaller).

    Coupled layers (the env's contract). Removing a channel also removes the following
    BatchNorm channel and the next layers' input channels, and layers joined by residual
    additions or depthwise convs must remove the same channels. Torch-Pruning's dependency
    graph finds this (``pruning.dependency``):

    - ``coupled_groups(model, example_input, layers)``: lists of layer names that share one
      decision and the same kept channel indices; every layer with a decision of its own is
      in exactly one list. The env gives layers in no list (``frozen_layers``: the
      classifier, whose outputs are the network's; layers around grouped convs; a
      depthwise conv after a concatenation, which follows its producers) no mask of their
      own; ``complete_masks`` still masks the channels their producers remove.
    - ``group_masks(weights, layers, density)``: one mask per layer of a group, ranking
      channels by their norm summed over the group's layers.
    - ``complete_masks(model, masks)``: adds the implied masks (biases, BatchNorm weight and
      bias, input channels of the following layers) for channels whose rows are masked in
      every layer of their group, so a removed channel really outputs zero and
      ``pruning.compact.compact_model`` gives the same outputs with a smaller network. It
      uses the plan traced by ``coupled_groups`` (or ``plan``) for the model's architecture.
    """

    name = "channel"
    index_format = "channel"
    codec = "channel"
    removes_channels = True
    #: Whole-channel pruning damages what the holdout score sees (BatchNorm re-estimation
    #: cannot repair it) far more than what a fine-tune keeps: on resnet20 / Fashion-MNIST
    #: at budget 0.7 the holdout score ranked the best channel policies with Kendall tau
    #: -0.07 against their fine-tuned test accuracy, a 5-step fine-tune with 0.24.
    search_proxy = "finetune"
    search_proxy_params = MappingProxyType({"steps": 5, "batch_size": 32})
    structure_params: tuple[str, ...] = ("channel_multiple",)

    def __init__(self, round_to: int = 8, norm: str = "l1") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown channel norm {norm!r}; valid: {', '.join(NORMS)}")
        self.round_to = check_positive_int("round_to", round_to)
        self.norm = norm
        self._plans: dict[tuple, ChannelPlan] = {}

    def _level_table(self, layer: LayerSpec) -> tuple[np.ndarray, list[Hashable]]:
        cout = layer.out_channels
        counts = [*range(self.round_to, cout, self.round_to), cout]
        return np.array(counts) / cout, counts

    def channel_scores(self, weight: torch.Tensor) -> np.ndarray:
        """Norm of each output channel's weights (``self.norm``), shape ``(Cout,)``."""
        rows = magnitude(weight).reshape(weight.shape[0], -1).astype(np.float64)
        return rows.sum(1) if self.norm == "l1" else np.sqrt((rows * rows).sum(1))

    def _masks(
        self, weight: torch.Tensor, layer: LayerSpec, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        return self._row_masks(self.channel_scores(weight), weight, keys)

    @staticmethod
    def _row_masks(
        scores: np.ndarray, weight: torch.Tensor, keys: Sequence[Hashable]
    ) -> list[np.ndarray]:
        keeps = top_masks(scores.reshape(1, -1), [int(c) for c in keys])
        shape = (-1,) + (1,) * (weight.dim() - 1)
        return [np.broadcast_to(k.reshape(shape), weight.shape) for k in keeps]

    # --- coupled layers -------------------------------------------------------------------

    def plan(self, model: nn.Module, example_input: torch.Tensor | None = None) -> ChannelPlan:
        """The dependency plan of ``model``'s architecture (traced once, then cached)."""
        key = structure_key(model)
        plan = self._plans.get(key)
        if plan is None:
            if example_input is None:
                raise ValueError(
                    "channel scheme: no dependency plan for this model yet; call "
                    "coupled_groups(model, example_input, layers) or plan(model, example_input)"
                )
            plan = self._plans[key] = channel_plan(model, example_input)
        return plan

    def coupled_groups(
        self, model: nn.Module, example_input: torch.Tensor, layers: Sequence[LayerSpec]
    ) -> list[list[str]]:
        """Groups of ``layers`` names that must share one decision and kept channels.

        In ``layers`` order; every layer whose channels may be pruned is in exactly one
        group (often alone); layers in no group must stay dense (``frozen_layers``).
        """
        return layers_by_group(self.plan(model, example_input), [ly.name for ly in layers])

    def frozen_layers(
        self, model: nn.Module, example_input: torch.Tensor, layers: Sequence[LayerSpec]
    ) -> list[str]:
        """Names in ``layers`` without a channel decision of their own (see the class)."""
        grouped = {n for g in self.coupled_groups(model, example_input, layers) for n in g}
        return [ly.name for ly in layers if ly.name not in grouped]

    def group_masks_for_levels(
        self,
        weights: Sequence[torch.Tensor],
        layers: Sequence[LayerSpec],
        levels: Sequence[float] | None = None,
    ) -> list[list[torch.Tensor]]:
        """Masks of a coupled group at several levels: ``[level][layer]``.

        All layers keep the same channel indices, chosen by the channel norms summed over
        the group (so the group shares one ranking and one set of levels).
        """
        if not layers or len(weights) != len(layers):
            raise ValueError(f"got {len(weights)} weights for {len(layers)} layers")
        counts = {ly.out_channels for ly in layers}
        if len(counts) != 1:
            raise ValueError(f"coupled layers have different channel counts: {sorted(counts)}")
        first = layers[0]
        if levels is None:
            keys = self._table(first)[1]
        else:
            keys = [self._key(d, first, False) for d in levels]
        scores = sum(self.channel_scores(w) for w in weights)
        per_layer = [[to_torch(m, w) for m in self._row_masks(scores, w, keys)] for w in weights]
        return [list(ms) for ms in zip(*per_layer, strict=True)]

    def group_masks(
        self, weights: Sequence[torch.Tensor], layers: Sequence[LayerSpec], density: float
    ) -> list[torch.Tensor]:
        """Masks of a coupled group at one density (see ``group_masks_for_levels``)."""
        self.snap(density, layers[0])  # validates the density before any work
        return self.group_masks_for_levels(weights, layers, [density])[0]

    def complete_masks(
        self,
        model: nn.Module,
        masks: dict[str, torch.Tensor],
        example_input: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Add bias, BatchNorm and next-layer input masks of the removed channels."""
        return complete_channel_masks(self.plan(model, example_input), named_params(model), masks)


def make_channel_scheme(
    *, round_to: int | None = None, channel_multiple: int | None = None, norm: str = "l1"
) -> ChannelScheme:
    """Channel scheme; ``round_to`` defaults to the hardware's ``channel_multiple`` (else 8)."""
    if round_to is None:
        round_to = 8 if channel_multiple is None else channel_multiple
    return ChannelScheme(round_to=round_to, norm=norm)


make_channel_scheme.structure_params = ChannelScheme.structure_params  # type: ignore[attr-defined]
SCHEMES.register("channel", make_channel_scheme, help=ChannelScheme.__doc__.split("\n")[0])
