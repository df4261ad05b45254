"""Scheme implementations; importing this package registers every scheme."""
