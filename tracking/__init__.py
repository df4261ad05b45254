"""MLflow tracking: one run per search, per-episode metrics, artifacts and plots."""

from tracking.run import SearchRun, download_artifacts, flatten, search_run

__all__ = ["SearchRun", "download_artifacts", "flatten", "search_run"]
