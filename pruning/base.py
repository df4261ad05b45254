"""The pruning-scheme protocol and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core import Registry, Schema
from hwmodels import HardwareModel, LayerSpec


class PruningScheme(ABC):
    """A sparsity structure a hardware target can exploit, as pure mask functions.

    ``levels(layer)`` lists the densities the scheme can realise on a layer (sorted,
    ending at 1.0 = dense); ``mask(weight, density, layer)`` returns the bool keep-mask
    of that density with the scheme's structure, keeping as much weight magnitude as the
    structure allows. A layer the scheme does not apply to has the single level 1.0, and
    the environment leaves it dense.

    A scheme is one class: besides its levels and masks it declares, with the defaults
    below, the index format the hardware charges (``index_format``), the codec that
    stores its masks (``codec``, a ``pruning.formats.CODECS`` name), the accuracy proxy a
    search under it uses by default (``search_proxy``, ``search_proxy_params``), whether
    it removes whole output channels (``removes_channels``: the export then also builds a
    physically smaller network), and its coupling hooks (``coupled_groups``,
    ``group_masks_for_levels``). A new scheme is a subclass plus
    ``SCHEMES.register(name, cls)``.
    """

    #: Registry name.
    name: ClassVar[str] = "abstract"
    #: Index format (``hwmodels.INDEX_FORMATS``) the hardware charges for this structure.
    index_format: ClassVar[str] = "bitmask"
    #: Codec (``pruning.formats.CODECS``) that stores the masked weights; a bitmask stores
    #: any mask, so it is the default.
    codec: ClassVar[str] = "bitmask"
    #: Accuracy proxy (and its parameters) a search under this scheme uses by default.
    search_proxy: ClassVar[str] = "holdout"
    search_proxy_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Whether the masks remove whole output channels (the export compacts the network).
    removes_channels: ClassVar[bool] = False

    @abstractmethod
    def levels(self, layer: LayerSpec) -> np.ndarray:
        """Sorted feasible densities in (0, 1] for ``layer``; the last is 1.0."""

    @abstractmethod
    def mask(
        self, weight: torch.Tensor, density: float, layer: LayerSpec, *, exact: bool = False
    ) -> torch.Tensor:
        """Bool keep-mask of ``weight``'s shape at ``density``.

        A density that is not a level rounds down to the nearest level (the least level if
        none is below); with ``exact=True`` it raises ``ValueError`` instead.
        """

    def masks_for_levels(
        self, weight: torch.Tensor, layer: LayerSpec, levels: Sequence[float] | None = None
    ) -> list[torch.Tensor]:
        """Masks for several levels (default: all); subclasses rank once and threshold."""
        levels = self.levels(layer) if levels is None else levels
        return [self.mask(weight, float(d), layer) for d in levels]

    def coupled_groups(
        self, model: nn.Module, example_input: torch.Tensor, layers: Sequence[LayerSpec]
    ) -> list[list[str]]:
        """Groups of layer names that share one decision (in ``layers`` order); layers in
        no group stay dense. Default: every layer decides alone."""
        return [[layer.name] for layer in layers]

    def group_masks_for_levels(
        self,
        weights: Sequence[torch.Tensor],
        layers: Sequence[LayerSpec],
        levels: Sequence[float] | None = None,
    ) -> list[list[torch.Tensor]]:
        """Masks of a coupled group at several levels, ``[level][layer]``. Default: each
        layer's own masks (schemes that couple layers rank the group as one)."""
        per_layer = [
            self.masks_for_levels(w, ly, levels) for w, ly in zip(weights, layers, strict=True)
        ]
        return [[masks[j] for masks in per_layer] for j in range(len(per_layer[0]))]

    def complete_masks(
        self, model: nn.Module, masks: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Add the masks a structure implies on other parameters.

        ``masks`` maps parameter names (``"features.0.weight"``) to keep-masks. Channel
        pruning, for example, also masks the following BatchNorm's weight and bias so that
        a removed channel really outputs zero. Default: unchanged.
        """
        return masks

    def floors(self, layer: LayerSpec) -> np.ndarray:
        """The least requested density each level answers (ascending, one per level).

        A level realised by rounding a nominal density (the count nearest to ``j / steps``)
        can lie a hair above it; its floor is the nominal density, so that a request of
        exactly ``j / steps`` gets that level rather than one a whole step below. Default:
        the levels themselves.
        """
        return self.levels(layer)

    def snap(self, density: float, layer: LayerSpec, *, exact: bool = False) -> float:
        """The level used for a requested ``density``: the highest whose floor is at or
        below it (the nearest level at or below it, or the grid level a hair above it)."""
        lv = self.levels(layer)
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density {density} is outside (0, 1]")
        idx = int(np.searchsorted(self.floors(layer), density + 1e-9, side="right")) - 1
        if exact and (idx < 0 or abs(lv[idx] - density) > 1e-9):
            shown = ", ".join(f"{x:.4g}" for x in lv[:12]) + (", ..." if len(lv) > 12 else "")
            raise ValueError(
                f"density {density} is not a level of scheme {self.name!r} on layer "
                f"{layer.name!r}; levels: {shown}"
            )
        return float(lv[max(idx, 0)])

    def describe(self) -> dict[str, Any]:
        """Scheme name and structural parameters (for logs and MLflow)."""
        public = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return {"name": self.name, "index_format": self.index_format, **public}


SCHEMES: Registry[PruningScheme] = Registry("scheme")


def get_scheme(name: str, *, hardware: HardwareModel | None = None, **params: Any) -> PruningScheme:
    """Build scheme ``name``; structural parameters default to ``hardware``'s.

    Only the structural keys the scheme's factory accepts are taken from the hardware;
    explicit ``params`` win.
    """
    factory = SCHEMES.factory(name)
    checked = check_scheme_params(name, params)
    defaults = hardware.structure() if hardware is not None else {}
    accepted = getattr(factory, "structure_params", ())
    merged = {k: v for k, v in defaults.items() if k in accepted}
    merged.update(checked)
    try:
        return factory(**merged)
    except TypeError as exc:  # a check of the parameters that met a type it did not expect
        raise ValueError(f"bad parameters for scheme {name!r}: {exc}") from None


def scheme_schema(name: str) -> Schema:
    """The parameters of scheme ``name``: its factory's keywords, typed by their defaults
    (the scheme checks their ranges). ``KeyError`` if the name is unknown."""
    return Schema.from_signature(SCHEMES.factory(name))


def check_scheme_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` normalised; ``ValueError`` for a parameter scheme ``name`` does not take
    (naming the valid ones) or one whose type differs from its default (``group_size=abc``)."""
    return scheme_schema(name).check(
        params,
        owner=f"scheme {name!r}",
        label=lambda key: f"scheme parameter {key!r} of {name!r}",
        partial=True,
    )


def list_schemes() -> list[str]:
    """Names of all registered schemes."""
    return SCHEMES.names()
