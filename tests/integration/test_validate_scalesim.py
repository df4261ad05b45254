"""The systolic presets against SCALE-Sim v3's stored cycles (no scalesim needed)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "bench" / "results" / "scalesim_reference.json"


def _validator():
    spec = importlib.util.spec_from_file_location(
        "validate_scalesim", ROOT / "bench" / "validate_scalesim.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result() -> dict:
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return _validator().compare(ref)


def test_reference_covers_the_spread() -> None:
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    cases = ref["cases"]
    assert {c["array"] for c in cases} == {32, 128}
    assert {c["dataflow"] for c in cases} == {"ws", "os"}
    assert {c["nm"] for c in cases} >= {"off", "2:4", "1:4"}
    assert all(c["stall_cycles"] == 0 for c in cases)  # compute cycles, no memory stall
    kinds = {d["kind"] for d in ref["layers"]}
    assert kinds == {"conv", "depthwise", "linear"}
    assert any(d["stride"] == 2 for d in ref["layers"])
    # K or N not a multiple of a 128x128 array
    assert any(d["K"] % 128 and d["N"] % 128 for d in ref["layers"])


@pytest.mark.parametrize("group", ["ws", "os", "nm"])
def test_systolic_presets_meet_the_goals(result: dict, group: str) -> None:
    s = result["summary"][group]
    assert s["mean_abs_error"] <= s["goal_mean"], s


def test_every_layer_matches_scalesim_exactly(result: dict) -> None:
    worst = max(result["rows"], key=lambda r: abs(r["rel_error"]))
    assert abs(worst["rel_error"]) < 1e-9, worst
