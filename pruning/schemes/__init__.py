"""Scheme implementations; importing this package registers every scheme."""

from pruning.schemes import balanced, ikr, pattern, unstructured

__all__ = ["balanced", "ikr", "pattern", "unstructured"]
