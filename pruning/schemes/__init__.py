"""Scheme implementations; importing this package registers every scheme."""

from pruning.schemes import balanced, crossbar, ikr, pattern, unstructured

__all__ = ["balanced", "crossbar", "ikr", "pattern", "unstructured"]
