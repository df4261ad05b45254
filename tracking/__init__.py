"""MLflow tracking: one run per search, per-episode metrics, artifacts and plots."""

from tracking.journal import EpisodeJournal, state_dir
from tracking.run import SearchRun, download_artifacts, flatten, run_state, search_run

__all__ = [
    "EpisodeJournal",
    "SearchRun",
    "download_artifacts",
    "flatten",
    "run_state",
    "search_run",
    "state_dir",
]
