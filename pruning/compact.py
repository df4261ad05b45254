"""Physically remove masked output channels, so the exported network is really smaller."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch_pruning as tp
from torch import nn

from pruning.apply import make_permanent
from pruning.dependency import (
    channel_plan,
    complete_channel_masks,
    named_params,
    removed_channels,
    trace,
)


def compact_model(
    model: nn.Module, example_input: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> nn.Module:
    """A smaller copy of ``model`` with the channels ``masks`` remove taken out.

    ``masks`` maps parameter names (``"layer.weight"``) to keep-masks, as the environment
    applies them. A channel is removed when its weight rows are masked in every layer of its
    coupled group (``pruning.dependency``); Torch-Pruning then deletes it from those layers,
    their biases and BatchNorms and the following layers' inputs. Every other masked entry
    stays as a zero. The result computes what ``model`` computes with ``masks`` completed by
    ``ChannelScheme.complete_masks`` (the same function up to float rounding), and its
    weights are plain parameters (no pruning hooks). ``model`` is left untouched.

    Raises ``ValueError`` if a group would lose all its channels.
    """
    work = make_permanent(copy.deepcopy(model))
    was_training = work.training
    work.eval()
    graph = trace(work, example_input)
    plan = channel_plan(work, example_input, graph)
    params = named_params(work)
    full = complete_channel_masks(plan, params, masks)
    with torch.no_grad():
        # Zeroing in place keeps the parameter objects the traced graph refers to.
        for key, mask in full.items():
            params[key].mul_(mask.to(device=params[key].device, dtype=params[key].dtype))
    for group in plan.groups:
        removed = [] if group.frozen else removed_channels(group, full).tolist()
        if not removed:
            continue
        if len(removed) == group.channels:
            raise ValueError(
                f"masks remove all {group.channels} channels of layers {list(group.layers)}; "
                "keep at least one"
            )
        root = work.get_submodule(group.layers[0])
        fn = (
            tp.prune_conv_out_channels
            if isinstance(root, nn.Conv2d)
            else tp.prune_linear_out_channels
        )
        # The plan numbers a group's channels as its root layer does, as Torch-Pruning does.
        graph.get_pruning_group(root, fn, idxs=removed).prune()
    work.train(was_training)
    return work
