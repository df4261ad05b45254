"""The MLflow UI serves what a user needs to see of a search (real server, real browser)."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from agents import SearchConfig, run_search
from tracking.ui_check import KEY_METRICS, PAGES, chromium, mlflow_ui, rendered_text


@pytest.fixture(scope="module")
def served():
    result = run_search(SearchConfig(agent="random", episodes=3, experiment="test-ui"))
    with mlflow_ui(os.environ["MLFLOW_TRACKING_URI"]) as base:
        yield result, base


def _api(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + "ajax-api/2.0/mlflow/" + path, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_server_serves_the_runs_figures_and_artifacts(served):
    result, base = served
    run = _api(base, f"runs/get?run_id={result.run_id}")["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    for key in KEY_METRICS:
        assert key in metrics
    assert metrics["best/test_accuracy"] == pytest.approx(result.best_test_accuracy)
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert "| uniform |" in tags["mlflow.note.content"]
    files = {f["path"] for f in _api(base, f"artifacts/list?run_id={result.run_id}")["files"]}
    assert {"best_policy.json", "config.yaml", "plots", "pruned_model"} <= files
    plots = _api(base, f"artifacts/list?run_id={result.run_id}&path=plots")["files"]
    assert {f["path"] for f in plots} == {"plots/search_curve.png", "plots/policy.png"}


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium (make ui-check installs it)")
def test_browser_renders_the_run_page_with_its_key_metrics(served):
    result, base = served
    run = _api(base, f"runs/get?run_id={result.run_id}")["run"]
    url = base + PAGES["run"].format(eid=run["info"]["experiment_id"], rid=result.run_id)
    dom = rendered_text(url)
    for key in KEY_METRICS:
        assert key in dom
    assert "Model training" in dom and "uniform" in dom
