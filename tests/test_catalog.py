"""The CLI's light name table (``agents.catalog``) against the registries, and what it
buys: ``hwprune list`` and a misspelt flag without importing torch, SB3 or MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents import catalog
from agents.cli import _register_optional_commands, app

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "stable_baselines3", "mlflow", "ray", "optuna")
runner = CliRunner()
_register_optional_commands()


def _registries() -> dict[str, object]:
    import envs.proxies  # noqa: F401  registers them
    import envs.workloads  # noqa: F401  registers them
    from agents.base import AGENTS
    from envs import PROXIES, WORKLOADS
    from hwmodels import HARDWARE
    from pruning import SCHEMES

    return {
        "models": WORKLOADS,
        "schemes": SCHEMES,
        "hardware": HARDWARE,
        "proxies": PROXIES,
        "agents": AGENTS,
    }


def _registered(section: str) -> list[str]:
    names = _registries()[section].names()
    if section == "models":
        from envs.models import torchvision_models

        torchvision = set(torchvision_models())
        names = [n for n in names if n not in torchvision]
    return names


@pytest.mark.parametrize("section", list(catalog.SECTIONS))
def test_catalog_names_what_the_registry_holds(section):
    listed = list(catalog.SECTIONS[section][1])
    registered = _registered(section)
    missing = [n for n in registered if n not in listed]
    extra = [n for n in listed if n not in registered]
    assert not missing, f"registered {section} {missing} missing from agents/catalog.py"
    assert not extra, f"agents/catalog.py lists {section} {extra} that are not registered"
    assert listed == registered  # the registry's order too
    assert catalog.SECTIONS[section][0] == _registries()[section].kind


def test_catalog_choices_match_the_full_checks():
    from envs import REWARD_FORMS
    from envs.evaluation import DEVICES

    assert catalog.REWARD_FORMS == tuple(REWARD_FORMS)
    assert catalog.DEVICES == tuple(DEVICES)


@pytest.mark.parametrize(
    ("section", "name"),
    [("schemes", "balancd"), ("hardware", "reram128"), ("proxies", "x"), ("agents", "dpg"),
     ("models", "digts-cnn"), ("models", "resnet-18")],
)  # fmt: skip
def test_catalog_errors_are_the_registries_own(section, name):
    with pytest.raises(KeyError) as light:
        catalog.check_name(section, name)
    with pytest.raises(KeyError) as full:
        _registries()[section].check(name)
    assert light.value.args == full.value.args
    assert "Valid choices" in light.value.args[0]


def test_catalog_accepts_torchvision_models():
    assert catalog.check_name("models", "resnet18") == "resnet18"


def _fresh_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter on this checkout (not an installed copy)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True
    )


def _cli_in_fresh_python(args: list[str], **env: str) -> dict:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "import agents.cli as cli\n"
        "cli._register_optional_commands()\n"
        f"res = CliRunner().invoke(cli.app, {args!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'code': res.exit_code, 'out': res.output, 'heavy': heavy}))\n"
    )
    return json.loads(_fresh_python(code, **env).stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--scheme", "balancd"], "Did you mean 'balanced'?"),
        (["search", "--hardware", "reram128"], "Did you mean 'reram-128'"),
        (["search", "--agent", "dpg", "--episodes", "5"], "Did you mean 'ddpg'?"),
        (["search", "--reward", "acc"], "unknown reward 'acc'"),
        (["search", "--shortlist-proxy", "holdot"], "shortlist_proxy 'holdot'"),
        (["sweep", "--scheme", "balanced,channl"], "Did you mean 'channel'?"),
        (["sweep", "--pair", "balanced:reram"], "unknown hardware preset 'reram'"),
    ],
)
def test_bad_flag_imports_no_heavy_stack(args, message):
    res = _cli_in_fresh_python(args)
    assert res["code"] == 2, res["out"]
    assert message in res["out"] and res["out"].startswith("error:")
    assert res["heavy"] == []


def test_list_fits_one_screen_without_heavy_imports():
    res = _cli_in_fresh_python(["list"], COLUMNS="80")
    assert res["code"] == 0 and res["heavy"] == []
    lines = res["out"].rstrip("\n").splitlines()
    assert len(lines) <= 60
    entries = sum(len(names) for _kind, names in catalog.SECTIONS.values()) + 1  # torchvision
    # One line per entry (none wraps at 80 columns), a title per section and a footer.
    assert len(lines) == entries + len(catalog.SECTIONS) + 1
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "``" not in res["out"]
    assert "torchvision" in res["out"] and "hwprune list models" in res["out"]
    assert "resnet18 " not in res["out"]  # the family is one line, not 80


def test_list_models_names_every_torchvision_model():
    from envs.models import torchvision_models

    res = runner.invoke(app, ["list", "models"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for name in [*catalog.WORKLOADS, *torchvision_models()]:
        assert name in text
    assert "``" not in res.output


def test_list_json_is_the_registries():
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    for section, registry in _registries().items():
        assert list(listing[section]) == registry.names()
    assert "``" not in res.output
    res = runner.invoke(app, ["list", "schemes", "--json"])
    assert list(json.loads(res.output)) == ["schemes"]


def test_list_bad_section_is_one_error_line():
    res = runner.invoke(app, ["list", "model"])
    assert res.exit_code == 2
    assert "unknown section 'model'; valid choices: models, schemes" in res.output
