"""See a search the way a user does: the MLflow UI in a real (headless) browser.

``make ui-check`` (``python -m agents.app.ui_check``) runs a short search into a fresh store
under ``ui-check/`` (or takes ``--run RUN_ID`` from ``MLFLOW_TRACKING_URI``), starts
``mlflow ui`` on 127.0.0.1, opens the experiment, the run, its charts and its artifacts
in Chromium, saves a screenshot of each under ``ui-check/screens/`` and checks that the
rendered run page shows the run's key metrics and its summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tracking.plots import COMPACT_CURVE

#: MLflow 3's UI shows an experiment as GenAI (traces, "Evaluation runs") or as model
#: training by a UI-wide toggle kept in the browser (``mlflow.workflowType`` in local
#: storage, GenAI by default); this URL parameter selects model training.
ML_VIEW = "?workflowType=machine_learning"

#: Pages a user looks at, as MLflow 3's UI routes them.
PAGES: dict[str, str] = {
    "experiment": "#/experiments/{eid}/runs" + ML_VIEW,
    "run": "#/experiments/{eid}/runs/{rid}" + ML_VIEW,
    "charts": "#/experiments/{eid}/runs/{rid}/model-metrics" + ML_VIEW,
    "artifacts": "#/experiments/{eid}/runs/{rid}/artifacts" + ML_VIEW,
    "search_curve": "#/experiments/{eid}/runs/{rid}/artifacts/plots/search_curve.png" + ML_VIEW,
}

#: What the rendered run page must show.
KEY_METRICS: tuple[str, ...] = (
    "best/test_accuracy",
    "best/cost_ratio",
    "uniform/test_accuracy",
    "dense/test_accuracy",
)


def chromium() -> str | None:
    """Path of a Chromium binary, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_ui(store_uri: str, *, timeout: float = 60.0) -> Iterator[str]:
    """``mlflow ui`` on a free loopback port for ``store_uri``; yields its base URL."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow ui did not start: {proc.stderr.read()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _browser(args: list[str], url: str, *, budget_ms: int = 15000) -> subprocess.CompletedProcess:
    binary = chromium()
    if binary is None:
        raise RuntimeError("no chromium: `apt-get install chromium` (make ui-check does)")
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--window-size=1600,1100", f"--virtual-time-budget={budget_ms}", *args, url,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def screenshot(url: str, path: Path) -> Path:
    """A PNG of ``url`` as Chromium renders it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _browser([f"--screenshot={path}"], url)
    if not path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return path


def rendered_text(url: str) -> str:
    """The DOM of ``url`` after its scripts ran (what the page shows, as HTML)."""
    return _browser(["--dump-dom"], url).stdout


def _short_search(store_uri: str) -> str:
    """A short real search (and a fine-tune of it) into ``store_uri``; the search's run id."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri}
    hwprune = [sys.executable, "-m", "agents.app.cli"]
    out = subprocess.run(
        [*hwprune, "search", "--episodes", "40", "--experiment", "ui-check", "--no-progress"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    run_id = out.split("MLflow run id:")[1].split()[0]
    subprocess.run(
        [*hwprune, "finetune", run_id, "--steps", "20", "--no-progress"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return run_id


def check(store_uri: str, run_id: str, out_dir: Path) -> dict[str, object]:
    """Screenshots of every page of ``PAGES`` and the rendered run page's key contents."""
    import mlflow

    client = mlflow.tracking.MlflowClient(store_uri)
    run = client.get_run(run_id)
    eid = run.info.experiment_id
    report: dict[str, object] = {"run_id": run_id, "screens": {}}
    with mlflow_ui(store_uri) as base:
        for name, route in PAGES.items():
            url = base + route.format(eid=eid, rid=run_id)
            report["screens"][name] = str(screenshot(url, out_dir / f"{name}.png"))
        dom = rendered_text(base + PAGES["run"].format(eid=eid, rid=run_id))
        curve = base + f"get-artifact?path={COMPACT_CURVE}&run_uuid={run_id}"
        with urllib.request.urlopen(curve, timeout=10) as resp:
            report["curve_served"] = resp.read(8) == b"\x89PNG\r\n\x1a\n"
    report["missing_metrics"] = [m for m in KEY_METRICS if m not in dom]
    report["first_screen"] = first_screen(dom, run_id)
    models = client.search_logged_models(experiment_ids=[eid])
    mine = [m for m in models if m.source_run_id == run_id]
    report["logged_models"] = {m.name: m.tags.get("mlflow.note.content", "") for m in mine}
    return report


def first_screen(dom: str, run_id: str) -> dict[str, bool]:
    """What the run's overview shows unfolded (the description's first 150 px: MLflow
    folds the rest behind "Show more"): the headline, the compact curve, no fold; and the
    logged data sets."""
    return {
        "headline (best test, cost ratio, dense, uniform)": all(
            part in dom for part in ("Best: test", "at cost ratio", "dense", "uniform")
        ),
        "search curve": f"{COMPACT_CURVE}&amp;run_uuid={run_id}" in dom
        or f"{COMPACT_CURVE}&run_uuid={run_id}" in dom,
        "description unfolded": "Show more" not in dom,
        "data sets": "-holdout" in dom,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``make ui-check``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="check this run of MLFLOW_TRACKING_URI instead of a new one")
    ap.add_argument("--out", type=Path, default=Path("ui-check"))
    args = ap.parse_args(argv)
    if chromium() is None:
        ap.error("no chromium found: `apt-get install chromium` (make ui-check does, as root)")
    if args.run is not None:
        store = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        run_id = args.run
    else:
        shutil.rmtree(args.out / "store", ignore_errors=True)
        (args.out / "store").mkdir(parents=True)
        store = f"sqlite:///{(args.out / 'store' / 'mlflow.db').resolve()}"
        os.chdir(args.out / "store")  # the sqlite store keeps artifacts in ./mlruns
        args.out = Path("..")
        print("running a 40-episode search and a fine-tune ...", flush=True)
        run_id = _short_search(store)
    report = check(store, run_id, args.out.resolve() / "screens")
    for name, path in report["screens"].items():
        print(f"{name:<11} {path}")
    for what, shown in report["first_screen"].items():
        print(f"first screen shows {what}: {shown}")
    print(f"description's curve served as PNG: {report['curve_served']}")
    for name, description in report["logged_models"].items():
        print(f"logged model {name}: {description or '(no description)'}")
    missing = report["missing_metrics"]
    print(
        f"run page shows {len(KEY_METRICS) - len(missing)}/{len(KEY_METRICS)} key metrics", end=""
    )
    print(f" (missing: {', '.join(missing)})" if missing else "")
    failed = (
        missing
        or not all(report["first_screen"].values())
        or not report["curve_served"]
        or not all(report["logged_models"].values())
        or not report["logged_models"]
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
