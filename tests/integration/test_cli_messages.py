"""What the CLI tells a user: the metric names its help uses, where to see a run."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from agents.app.cli import app
from hwmodels import HARDWARE, METRIC_ALIASES, get_hardware
from tracking.query import ui_hint

runner = CliRunner()


def _help(command: str, option: str) -> str:
    group = typer.main.get_command(app)
    return next(p.help for p in group.commands[command].params if p.name == option)


def test_metric_help_names_each_default_by_its_metric_name():
    text = _help("search", "metric")
    listed = text.split("Budgeted cost: ")[1].split()[0].split("|")
    assert sorted(listed) == sorted(METRIC_ALIASES)
    defaults = " ".join(text.split("default:")[1].split())
    for preset in HARDWARE.names():
        metric = get_hardware(preset).default_metric
        alias = next(a for a, m in METRIC_ALIASES.items() if m == metric)
        family = preset.split("-")[0]
        assert alias in defaults, (preset, alias)
        if alias != "latency":  # the exceptions are named with their preset family
            assert f"{alias} " in defaults and family in defaults, (preset, defaults)
    assert "crossbars for" not in text


@pytest.mark.parametrize(
    ("uri", "expected", "absent"),
    [
        ("http://10.0.0.5:5055", "see it: http://10.0.0.5:5055/#/experiments/3/runs/r1",
         "mlflow ui"),
        ("https://mlflow.example.org/", "https://mlflow.example.org/#/experiments/3/runs/r1",
         "127.0"),
        ("sqlite:////data/runs/mlflow.db",
         "`mlflow ui --backend-store-uri sqlite:////data/runs/mlflow.db`, then "
         "http://127.0.0.1:5000/#/experiments/3/runs/r1", "10.0"),
        ("sqlite:////tmp/a b/mlflow.db", "--backend-store-uri 'sqlite:////tmp/a b/mlflow.db'",
         "xx"),
        ("/srv/mlruns", "`mlflow ui --backend-store-uri /srv/mlruns`", "xx"),
        ("postgresql://u:secret@db:5432/mlflow", "postgresql://u:***@db:5432/mlflow", "secret"),
    ],
)  # fmt: skip
def test_ui_hint_matches_the_tracking_uri(uri, expected, absent):
    hint = ui_hint(uri, "3", "r1")
    assert expected in hint and absent not in hint


def test_search_prints_the_link_of_its_own_store(monkeypatch):
    uri = os.environ["MLFLOW_TRACKING_URI"]  # the tests' SQLite store (conftest)
    args = ["search", "--agent", "uniform", "--episodes", "1", "--no-progress",
            "--experiment", "test-ui-hint"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"mlflow ui --backend-store-uri {uri}" in text
    import tracking.sqlite_runs

    monkeypatch.setattr(tracking.sqlite_runs, "tracking_uri", lambda: "http://10.1.2.3:5055")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run_id = res.output.split("MLflow run id:")[1].split()[0]
    assert "see it: http://10.1.2.3:5055/#/experiments/" in res.output
    assert f"/runs/{run_id}" in " ".join(res.output.split())


def test_recovery_bar_counts_the_steps_done_once_each():
    """``recover`` reports the steps done so far (1, 2, ...): the bar shows that count,
    and each recovery closes the bar before it."""
    from agents.app.cli import _recovery_bars

    bars: list = []
    make = _recovery_bars(bars, 1, progress=True)  # shown (a disabled bar counts nothing)
    step = make("best", 5)
    for done in range(1, 6):
        step(done)
    assert (bars[0].n, bars[0].total) == (5, 5)
    make("uniform", 3)(3)
    assert (len(bars), bars[1].n) == (2, 3)
    for bar in bars:
        bar.close()
