"""CLI commands that live in their own modules (cost models, GPU profiling)."""
