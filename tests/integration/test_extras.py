"""Optional parts as extras: pyproject declares them, make installs them all, and a command
that needs a missing one names the extra to install in one error line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.app import catalog
from agents.app.cli import _register_optional_commands, app
from agents.extras import EXTRAS, MissingExtra, require_extra

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
_register_optional_commands()


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def test_pyproject_declares_each_extra_and_all():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    core = {_dist(r) for r in project["dependencies"]}
    for extra, packages in EXTRAS.items():
        assert sorted(_dist(r) for r in optional[extra]) == sorted(d for d, _ in packages)
        assert not core & {d for d, _ in packages}, f"{extra} is still a core dependency"
    (everything,) = optional["all"]
    assert everything == f"hwprune[{','.join(EXTRAS)}]"
    assert "onnx" in core and "onnxscript" in core  # every export writes model.onnx


def test_make_installs_every_extra():
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -e '.[dev,all]'" in makefile


def _block(monkeypatch, extra: str) -> None:
    """Make the modules of ``extra`` unimportable, as if it were not installed."""
    for _dist_name, module in EXTRAS[extra]:
        monkeypatch.setitem(sys.modules, module, None)


def _assert_names_extra(res, extra: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    error = " ".join(res.output.split())
    assert lines[-1].startswith("error:") or error.startswith("error:"), res.output
    assert f"pip install 'hwprune[{extra}]'" in error, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("extra", "args", "also"),
    [
        ("sweep", ["sweep", "--scheme", "balanced", "--episodes", "2"], "hwprune sweep needs Ray"),
        ("baselines", ["search", "--agent", "tpe", "--episodes", "2"], "agent 'tpe'"),
        ("baselines", ["search", "--agent", "cmaes", "--episodes", "2"], "agent 'cmaes'"),
        ("baselines", ["sweep", "--agent", "random,tpe", "--episodes", "2"], "agent 'tpe'"),
        ("server", ["server", "start", "--root", "{tmp}"], "hwprune server start needs"),
        ("onnx", ["profile-cpu", "--model", "digits-cnn", "--out", "{tmp}/t.json"],
         "or pass --engine torch"),
    ],
)  # fmt: skip
def test_a_command_names_the_extra_it_misses(extra, args, also, monkeypatch, tmp_path):
    _block(monkeypatch, extra)
    res = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    _assert_names_extra(res, extra)
    assert also in " ".join(res.output.split())
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "pg").exists()


def test_a_config_file_naming_an_agent_of_a_missing_extra(monkeypatch, tmp_path):
    _block(monkeypatch, "baselines")
    config = tmp_path / "c.yml"
    config.write_text("agent: cmaes\nepisodes: 2\n")
    res = runner.invoke(app, ["search", "--config", str(config)])
    _assert_names_extra(res, "baselines")


def test_agent_extras_match_what_the_agents_need(monkeypatch):
    """The name table's agent extras are exactly the agents that refuse to build without
    their extra (what ``search --agent`` checks before importing anything)."""
    from agents.base import get_agent

    agent_extras = catalog.build_table()["agent_extras"]
    for extra in EXTRAS:
        _block(monkeypatch, extra)
    needing = set()
    for name in catalog.names("agents"):
        try:
            get_agent(name)
        except MissingExtra as exc:
            assert "pip install 'hwprune[baselines]'" in str(exc)
            needing.add(name)
    assert needing == set(agent_extras)


def test_require_extra_passes_when_installed_and_names_the_missing_module(monkeypatch):
    require_extra("baselines", "x")  # installed here (make installs every extra)
    monkeypatch.setitem(sys.modules, "cmaes", None)
    with pytest.raises(MissingExtra, match=r"no module 'cmaes'.*hwprune\[baselines\]") as err:
        require_extra("baselines", "agent 'cmaes'", hint="use --agent random")
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)
    assert str(err.value).endswith("or use --agent random")
