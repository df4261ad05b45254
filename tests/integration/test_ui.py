"""The MLflow UI serves what a user needs to see of a search (real server, real browser)."""

from __future__ import annotations

import json
import os
import urllib.request

import mlflow
import pytest

from agents import SearchConfig, run_search
from agents.app.ui_check import (
    KEY_METRICS,
    PAGES,
    chromium,
    first_screen,
    mlflow_ui,
    rendered_text,
    screenshot,
)
from tracking.plots import COMPACT_CURVE


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
    assert tags["mlflow.note.content"].startswith("**Best: test ")
    files = {f["path"] for f in _api(base, f"artifacts/list?run_id={result.run_id}")["files"]}
    assert {"summary.md", "best_policy.json", "config.yaml", "plots", "pruned_model"} <= files
    plots = _api(base, f"artifacts/list?run_id={result.run_id}&path=plots")["files"]
    assert {f["path"] for f in plots} == {
        "plots/search_curve.png",
        "plots/search_curve_small.png",
        "plots/policy.png",
    }


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="no chromium (make ui-check installs it)")
def test_browser_renders_the_run_page_with_its_key_metrics(served, tmp_path):
    result, base = served
    run = _api(base, f"runs/get?run_id={result.run_id}")["run"]
    url = base + PAGES["run"].format(eid=run["info"]["experiment_id"], rid=result.run_id)
    dom = rendered_text(url)
    for key in KEY_METRICS:
        assert key in dom
    assert "Model training" in dom and "uniform" in dom
    shot = screenshot(url, tmp_path / "run.png")  # what a person sees on opening the link
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    # The first screen: headline figures and the curve unfolded, the data sets, the model.
    shown = first_screen(dom, result.run_id)
    assert all(shown.values()), shown
    assert "digits-cnn-balanced-accel-kang-16" in dom
    with urllib.request.urlopen(base + f"get-artifact?path={COMPACT_CURVE}&run_uuid="
                                f"{result.run_id}", timeout=10) as resp:  # fmt: skip
        assert resp.read(4) == b"\x89PNG"


@pytest.mark.slow
def test_logged_model_is_named_and_described_and_the_data_are_inputs(served):
    result, _ = served
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(result.run_id)
    models = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    mine = [m for m in models if m.source_run_id == result.run_id]
    assert [m.name for m in mine] == ["digits-cnn-balanced-accel-kang-16"]
    assert result.model_uri == f"runs:/{result.run_id}/digits-cnn-balanced-accel-kang-16"
    description = mine[0].tags["mlflow.note.content"]
    assert description.startswith("digits-cnn pruned by balanced for accel-kang-16: cost ratio")
    inputs = {d.dataset.name: d.tags[0].value for d in run.inputs.dataset_inputs}
    assert inputs == {"digits-holdout": "holdout", "digits-test": "test"}
