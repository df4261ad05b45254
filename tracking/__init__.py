"""MLflow tracking: one run per search, per-episode metrics, artifacts and plots."""

from tracking.journal import EpisodeJournal, state_dir
from tracking.run import (
    SearchRun,
    StoreFailure,
    discard_download,
    download_artifacts,
    flatten,
    run_state,
    search_run,
)
from tracking.store import StoreError, check_experiment, check_store

__all__ = [
    "EpisodeJournal",
    "SearchRun",
    "StoreFailure",
    "StoreError",
    "check_experiment",
    "check_store",
    "discard_download",
    "download_artifacts",
    "flatten",
    "run_state",
    "search_run",
    "state_dir",
]
