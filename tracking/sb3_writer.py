"""Send Stable-Baselines3's own training logs (losses, learning rate) to MLflow."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from stable_baselines3.common.logger import KVWriter


class MLflowOutputFormat(KVWriter):
    """SB3 ``KVWriter`` that logs scalar values to the active MLflow run."""

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...] | None],
        step: int = 0,
    ) -> None:
        """Log every scalar not excluded for the ``"mlflow"`` format."""
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
            mlflow.log_metrics(metrics, step=int(step))

    def close(self) -> None:
        """Nothing to release."""
