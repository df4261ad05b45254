"""Send Stable-Baselines3's own training logs (losses, learning rate) to MLflow."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from stable_baselines3.common.logger import KVWriter

from tracking.run import STORE_ERRORS


def last_logged_step(run_id: str, prefix: str = "sb3/") -> int:
    """The highest step of any ``prefix`` metric the run holds (-1: none)."""
    client = mlflow.tracking.MlflowClient()
    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(prefix)]
    steps = (m.step for k in keys for m in client.get_metric_history(run_id, k))
    return max(steps, default=-1)


class MLflowOutputFormat(KVWriter):
    """SB3 ``KVWriter`` that logs scalar values to the active MLflow run.

    A resumed search replays its training: steps up to ``after_step`` (what the run
    already holds, ``last_logged_step``) are not logged again. Training figures are
    secondary: if the store fails, they stop (the episodes' own flush reports it).
    """

    def __init__(self, after_step: int = -1) -> None:
        self.after_step = int(after_step)
        self.offline = False

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...] | None],
        step: int = 0,
    ) -> None:
        """Log every scalar not excluded for the ``"mlflow"`` format."""
        if self.offline or step <= self.after_step:
            return
        metrics = {}
        for key, value in key_values.items():
            excluded = key_excluded.get(key)
            if excluded is not None and "mlflow" in excluded:
                continue
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, bool
            ):
                metrics[f"sb3/{key}"] = float(value)
        if metrics:
            try:
                mlflow.log_metrics(metrics, step=int(step))
            except STORE_ERRORS:
                self.offline = True

    def close(self) -> None:
        """Nothing to release."""
