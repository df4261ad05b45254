"""Apply keep-masks through ``torch.nn.utils.prune`` and make them permanent."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


def _split(param_name: str) -> tuple[str, str]:
    module_name, _, attr = param_name.rpartition(".")
    return module_name, attr


def _module(model: nn.Module, module_name: str) -> nn.Module:
    try:
        return model.get_submodule(module_name)
    except AttributeError as exc:
        raise KeyError(f"model has no module {module_name!r} (from a mask key)") from exc


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Reparametrise each masked parameter as ``<p>_orig * <p>_mask`` (in place).

    ``masks`` maps parameter names (``"features.0.weight"``) to bool keep-masks. A
    parameter that already carries a mask gets the new one (torch combines them, so masks
    only ever remove more). Returns ``model``.
    """
    for key, mask in masks.items():
        module_name, attr = _split(key)
        module = _module(model, module_name)
        target = getattr(module, attr + "_orig", None)
        if target is None:
            target = getattr(module, attr, None)
        if target is None:
            raise KeyError(f"module {module_name!r} has no parameter {attr!r}")
        if tuple(mask.shape) != tuple(target.shape):
            raise ValueError(
                f"mask for {key!r} has shape {tuple(mask.shape)}, parameter has "
                f"{tuple(target.shape)}"
            )
        prune.custom_from_mask(module, attr, mask.to(device=target.device, dtype=torch.bool))
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every pruning reparametrisation into plain parameters (``prune.remove``)."""
    for module in model.modules():
        names = [
            hook._tensor_name
            for hook in list(module._forward_pre_hooks.values())
            if isinstance(hook, prune.BasePruningMethod)
        ]
        for attr in names:
            prune.remove(module, attr)
    return model


class MaskSwitcher:
    """Applies a different set of masks to one working model many times, cheaply.

    The reparametrisation is installed once per parameter; later calls only copy new
    masks into the existing ``<p>_mask`` buffers (and reset masks not given to all-ones),
    so an RL episode's evaluation does not rebuild hooks.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._installed: dict[str, nn.Module] = {}

    def set(self, masks: dict[str, torch.Tensor]) -> nn.Module:
        """Make ``masks`` the model's current masks; returns the model."""
        for key, module in self._installed.items():
            if key not in masks:
                getattr(module, _split(key)[1] + "_mask").fill_(1)
                _refresh(module, _split(key)[1])
        for key, mask in masks.items():
            module = self._installed.get(key)
            if module is None:
                apply_masks(self.model, {key: mask})
                self._installed[key] = _module(self.model, _split(key)[0])
            else:
                attr = _split(key)[1]
                buf = getattr(module, attr + "_mask")
                buf.copy_(mask.to(device=buf.device, dtype=buf.dtype))
                _refresh(module, attr)
        return self.model


def _refresh(module: nn.Module, attr: str) -> None:
    """Recompute ``module.<attr>`` now, as torch's forward pre-hook would on the next call."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == attr:
            setattr(module, attr, hook.apply_mask(module))
