"""Scheme implementations; importing this package registers every scheme."""

from pruning.schemes import balanced, channel, crossbar, ikr, pattern, unstructured

__all__ = ["balanced", "channel", "crossbar", "ikr", "pattern", "unstructured"]
