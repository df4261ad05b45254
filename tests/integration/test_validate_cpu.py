"""The cpu target against measured ONNX latency of exported policies (stored results)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "validate_cpu.json"


def test_predicted_latency_ranks_measured_latency() -> None:
    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert len(result["policies"]) >= 20
    for batch, s in result["summary"].items():
        assert s["spearman"] >= 0.9, (batch, s)
        assert s["best_measured_speedup"] > 1.0
        # The predicted speed-up of the fastest policy is within 25% of the measured one.
        assert abs(s["best_predicted_speedup"] / s["best_measured_speedup"] - 1) < 0.25
