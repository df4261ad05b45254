"""The name table (``agents.app.catalog``): the registries' names, read without importing
torch, SB3 or MLflow, rebuilt when a module changes; ``hwprune list`` and the checks of
flags that it makes fast."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.app import catalog
from agents.app.cli import _register_optional_commands, app

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "stable_baselines3", "mlflow", "ray", "optuna")
runner = CliRunner()
_register_optional_commands()


def _registries() -> dict[str, object]:
    import envs.proxies.builtin  # noqa: F401  registers them
    import envs.workloads.builtin  # noqa: F401  registers them
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


def test_the_table_is_the_registries():
    from envs import REWARD_FORMS
    from envs.workloads.evaluation import DEVICES
    from envs.workloads.models import torchvision_models

    table = catalog.build_table()
    registries = _registries()
    assert list(table["sections"]) == list(catalog.SECTIONS)
    for section, registry in registries.items():
        assert table["sections"][section] == registry.describe()  # names, order, text
        assert catalog.SECTIONS[section] == registry.kind
    assert set(table["torchvision"]) == set(torchvision_models())
    agents = registries["agents"]
    assert table["agent_extras"] == {
        n: agents.factory(n).extra for n in agents.names() if agents.factory(n).extra
    }
    assert table["agent_extras"] == {"tpe": "baselines", "cmaes": "baselines"}
    assert table["reward_forms"] == list(REWARD_FORMS)
    assert table["devices"] == list(DEVICES)
    assert "``" not in json.dumps(table)  # plain text, no RST markup


@pytest.mark.parametrize(
    ("section", "name"),
    [("schemes", "balancd"), ("hardware", "reram128"), ("proxies", "x"), ("agents", "dpg"),
     ("models", "digts-cnn"), ("models", "resnet-18")],
)  # fmt: skip
def test_its_errors_are_the_registries_own(section, name):
    with pytest.raises(KeyError) as light:
        catalog.check_name(section, name)
    with pytest.raises(KeyError) as full:
        _registries()[section].check(name)
    assert light.value.args == full.value.args
    assert "Valid choices" in light.value.args[0]


@pytest.mark.parametrize("metric", ["lat", "latency_ms", ""])
def test_metric_errors_are_resolve_metrics_own(metric):
    from hwmodels import resolve_metric

    with pytest.raises(ValueError) as light:
        catalog.check_names(metric=metric)
    with pytest.raises(ValueError) as full:
        resolve_metric(metric)
    assert light.value.args == full.value.args
    for good in ("latency", "latency_s", "resources", "cycles"):
        catalog.check_names(metric=good)


def test_entries_registered_in_this_process_are_seen():
    from pruning import SCHEMES

    SCHEMES.register("zz-in-process", lambda **kw: None, help="registered by a test")
    try:
        assert catalog.check_name("schemes", "zz-in-process") == "zz-in-process"
    finally:
        SCHEMES._factories.pop("zz-in-process")
        SCHEMES._help.pop("zz-in-process")


def test_cache_dir_follows_the_workloads_rule(monkeypatch, tmp_path):
    from envs.workloads.builtin import cache_dir

    for env in ({"HWPRUNE_CACHE": str(tmp_path / "a")}, {"XDG_CACHE_HOME": str(tmp_path)}, {}):
        for key in ("HWPRUNE_CACHE", "XDG_CACHE_HOME"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert catalog.cache_dir() == cache_dir()


def _python(code: str, *, root: Path = ROOT, args: tuple[str, ...] = (), **env: str) -> str:
    """``code`` in a new interpreter on the checkout ``root`` (not an installed copy)."""
    environ = {**os.environ, "PYTHONPATH": str(root), **env}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=environ
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


_CLI = (
    "import json, sys\n"
    "from typer.testing import CliRunner\n"
    "import agents.app.cli as cli\n"
    "cli._register_optional_commands()\n"
    "res = CliRunner().invoke(cli.app, json.loads(sys.argv[1]))\n"
    f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
    "print(json.dumps({'code': res.exit_code, 'out': res.output, 'heavy': heavy}))\n"
)


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory) -> str:
    """A cache directory holding this checkout's name table (as ``make`` leaves it)."""
    cache = tmp_path_factory.mktemp("cache")
    _python("from agents.app.catalog import table; table()", HWPRUNE_CACHE=str(cache))
    return str(cache)


def _cli(args: list[str], cache: str, **env: str) -> dict:
    out = _python(_CLI, args=(json.dumps(args),), HWPRUNE_CACHE=cache, **env)
    return json.loads(out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--scheme", "balancd"], "Did you mean 'balanced'?"),
        (["search", "--hardware", "reram128"], "Did you mean 'reram-128'"),
        (["search", "--agent", "dpg", "--episodes", "5"], "Did you mean 'ddpg'?"),
        (["search", "--model", "resnet-18"], "unknown model 'resnet-18'"),
        (["search", "--reward", "acc"], "unknown reward 'acc'"),
        (["search", "--shortlist-proxy", "holdot"], "shortlist_proxy 'holdot'"),
        (["sweep", "--scheme", "balanced,channl"], "Did you mean 'channel'?"),
        (["sweep", "--pair", "balanced:reram"], "unknown hardware preset 'reram'"),
    ],
)
def test_a_bad_flag_imports_no_heavy_stack(args, message, warm_cache):
    res = _cli(args, warm_cache)
    assert res["code"] == 2, res["out"]
    assert message in res["out"] and res["out"].startswith("error:")
    assert res["heavy"] == []


def test_list_fits_one_screen_without_heavy_imports(warm_cache):
    res = _cli(["list"], warm_cache, COLUMNS="80")
    assert res["code"] == 0 and res["heavy"] == []
    lines = res["out"].rstrip("\n").splitlines()
    assert len(lines) <= 60
    sections = catalog.build_table()["sections"]
    torchvision = set(catalog.build_table()["torchvision"])
    entries = sum(1 for s in sections.values() for n in s if n not in torchvision) + 1
    # One line per entry (cut, not wrapped, at 80 columns), a title per section, a footer.
    assert len(lines) == entries + len(sections) + 1
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert "``" not in res["out"]
    assert f"{len(torchvision)} classifiers" in res["out"] and "hwprune list models" in res["out"]
    assert "resnet18 " not in res["out"]  # the family is one line, not 80


@pytest.mark.slow
def test_a_changed_module_rebuilds_the_table(tmp_path):
    """A scheme added as one module and one import line is listed and accepted, without a
    line anywhere else; the table is then read without importing torch."""
    copy = tmp_path / "project"
    for pkg in catalog.PACKAGES:
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    cache = str(tmp_path / "cache")
    res = _python(_CLI, root=copy, args=(json.dumps(["list", "schemes", "--json"]),),
                  HWPRUNE_CACHE=cache)  # fmt: skip
    listed = json.loads(json.loads(res)["out"])
    assert "toy" not in listed["schemes"]
    (copy / "pruning" / "schemes" / "toy.py").write_text(
        "from pruning.base import SCHEMES\n"
        "from pruning.schemes.unstructured import UnstructuredScheme\n\n\n"
        "class ToyScheme(UnstructuredScheme):\n"
        '    """Unstructured, under another name."""\n\n'
        '    name = "toy"\n\n\n'
        'SCHEMES.register("toy", ToyScheme)\n'
    )
    init = copy / "pruning" / "schemes" / "__init__.py"
    init.write_text(init.read_text() + "from pruning.schemes import toy  # noqa: E402,F401\n")
    first = json.loads(_python(_CLI, root=copy, args=(json.dumps(["list"]),), HWPRUNE_CACHE=cache))
    assert "toy" in first["out"] and "Unstructured, under another name." in first["out"]
    assert "torch" in first["heavy"]  # rebuilt from the registries
    again = json.loads(
        _python(
            _CLI, root=copy, args=(json.dumps(["search", "--scheme", "tyo"]),), HWPRUNE_CACHE=cache
        )  # fmt: skip
    )
    assert again["heavy"] == [] and "Did you mean 'toy'?" in again["out"]


def test_list_models_names_every_torchvision_model():
    from envs.workloads.models import torchvision_models

    res = runner.invoke(app, ["list", "models"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    for name in [*_registries()["models"].names(), *torchvision_models()]:
        assert name in text
    assert "``" not in res.output


def test_list_json_is_the_registries():
    res = runner.invoke(app, ["list", "--json"])
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    for section, registry in _registries().items():
        assert listing[section] == registry.describe()
    res = runner.invoke(app, ["list", "schemes", "--json"])
    assert list(json.loads(res.output)) == ["schemes"]


def test_list_bad_section_is_one_error_line():
    res = runner.invoke(app, ["list", "model"])
    assert res.exit_code == 2
    assert "unknown section 'model'; valid choices: models, schemes" in res.output
