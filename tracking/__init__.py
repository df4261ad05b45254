"""MLflow tracking: one run per search, per-episode metrics, artifacts and plots."""

from tracking import sweep_runs
from tracking.journal import EpisodeJournal, JournalWriteError, state_dir
from tracking.query import TrackingError, experiment_name_of, run_status
from tracking.run import (
    STORE_ERRORS,
    SearchRun,
    StoreFailure,
    discard_download,
    download_artifacts,
    flatten,
    open_experiment,
    run_state,
    search_run,
)
from tracking.store import StoreError, check_experiment, check_store

__all__ = [
    "STORE_ERRORS",
    "EpisodeJournal",
    "JournalWriteError",
    "SearchRun",
    "StoreFailure",
    "StoreError",
    "TrackingError",
    "check_experiment",
    "check_store",
    "discard_download",
    "download_artifacts",
    "experiment_name_of",
    "flatten",
    "open_experiment",
    "run_state",
    "run_status",
    "search_run",
    "state_dir",
    "sweep_runs",
]
