"""Hardware-structured pruning: layer inspection, scheme masks, applying and exporting them.

``get_scheme(name, hardware=..., **params)`` builds a scheme; ``inspect_model`` finds the
prunable layers; ``apply_masks`` / ``make_permanent`` go through ``torch.nn.utils.prune``.
"""

from pruning.apply import MaskSwitcher, apply_masks, make_permanent
from pruning.base import SCHEMES, PruningScheme, get_scheme, list_schemes
from pruning.inspect import inspect_model

# Importing the scheme modules registers them.
from pruning import schemes as _schemes  # noqa: E402,F401  isort: skip

__all__ = [
    "SCHEMES",
    "MaskSwitcher",
    "PruningScheme",
    "apply_masks",
    "get_scheme",
    "inspect_model",
    "list_schemes",
    "make_permanent",
]
