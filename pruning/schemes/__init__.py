"""Scheme implementations; importing this package registers every scheme."""

from pruning.schemes import balanced, unstructured

__all__ = ["balanced", "unstructured"]
