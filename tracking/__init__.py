"""MLflow tracking: one run per search, per-episode metrics, artifacts and plots.

Names are imported on first use, so that a command that only reads a local store
(``hwprune runs``, ``compare``: ``tracking.query``) does not import MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EpisodeJournal": "tracking.journal",
    "JournalWriteError": "tracking.journal",
    "state_dir": "tracking.journal",
    "TrackingError": "tracking.query",
    "experiment_name_of": "tracking.query",
    "run_status": "tracking.query",
    "STORE_ERRORS": "tracking.run",
    "SearchRun": "tracking.run",
    "StoreFailure": "tracking.run",
    "discard_download": "tracking.run",
    "download_artifacts": "tracking.run",
    "flatten": "tracking.run",
    "open_experiment": "tracking.run",
    "run_state": "tracking.run",
    "search_run": "tracking.run",
    "StoreError": "tracking.store",
    "check_experiment": "tracking.store",
    "check_store": "tracking.store",
}
_MODULES = ("plots", "sweep_runs")

__all__ = sorted([*_EXPORTS, "sweep_runs"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"tracking.{name}")
    raise AttributeError(f"module 'tracking' has no attribute {name!r}")
