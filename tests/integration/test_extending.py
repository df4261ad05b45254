"""The README's "Extending" recipes hold: a new scheme, hardware preset or agent is one
module plus one import line, and search, export and cost work on it unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agents", "core", "envs", "hwmodels", "pruning", "tracking")

TOY_SCHEME = '''"""A toy scheme: unstructured pruning under another name."""

from pruning.base import SCHEMES
from pruning.schemes.unstructured import UnstructuredScheme


class ToyScheme(UnstructuredScheme):
    """Unstructured magnitude pruning, registered as ``toy``."""

    name = "toy"


SCHEMES.register("toy", ToyScheme)
'''

TOY_HARDWARE = '''"""A toy hardware preset: a Kang PE array, blocks of 8, one multiplier per PE."""

from hwmodels.base import HARDWARE
from hwmodels.kang import KangAccelerator, KangParams

HARDWARE.register(
    "toy-accel",
    lambda: KangAccelerator(KangParams(group_size=8, multipliers_per_pe=1), name="toy-accel"),
    help="a toy Kang array (g=8, one multiplier per PE)",
)
'''


TOY_PROXY = '''"""A toy accuracy proxy: the share of the prunable weights a policy keeps."""

import torch

from envs.proxies.base import PROXIES, AccuracyProxy


@PROXIES.register("toy-proxy")
class ToyProxy(AccuracyProxy):
    """Data-free: kept weights over all weights of the masked tensors."""

    name = "toy-proxy"

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """Kept share in [0, 1] (1 for no masks)."""
        total = sum(m.numel() for m in masks.values())
        return 1.0 if not total else float(sum(m.sum() for m in masks.values())) / total
'''

TOY_AGENT = '''"""A toy agent: the random baseline under another name."""

from agents.base import AGENTS
from agents.baselines import RandomAgent


@AGENTS.register("toy-agent", help="random actions, registered as toy-agent")
class ToyAgent(RandomAgent):
    """Random feasible policies, best kept."""

    name = "toy-agent"
'''


def _copy_with_toys(dest: Path) -> Path:
    """A copy of the project's packages with pruning/schemes/toy.py, hwmodels/toy.py and
    their one import line each: the issue's recipe, nothing else touched."""
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pt")
        )
    (dest / "pruning" / "schemes" / "toy.py").write_text(TOY_SCHEME)
    init = dest / "pruning" / "schemes" / "__init__.py"
    init.write_text(init.read_text() + "from pruning.schemes import toy  # noqa: E402,F401\n")
    (dest / "hwmodels" / "toy.py").write_text(TOY_HARDWARE)
    presets = dest / "hwmodels" / "presets.py"
    presets.write_text(presets.read_text() + "from hwmodels import toy  # noqa: E402,F401\n")
    # The proxy's recipe: one module and its import line where the built-in ones register.
    (dest / "envs" / "proxies" / "toy.py").write_text(TOY_PROXY)
    builtin = dest / "envs" / "proxies" / "builtin.py"
    builtin.write_text(builtin.read_text() + "from envs.proxies import toy  # noqa: E402,F401\n")
    # The agent's recipe: one module and its name among the registry's providers.
    (dest / "agents" / "toy_agent.py").write_text(TOY_AGENT)
    base = dest / "agents" / "base.py"
    text = base.read_text()
    assert '"agents.optuna_search")' in text
    base.write_text(
        text.replace('"agents.optuna_search")', '"agents.optuna_search", "agents.toy_agent")')
    )
    return dest


def _cli(copy: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run(
        [sys.executable, "-m", "agents.app.cli", *args],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_a_scheme_and_a_hardware_preset_are_one_file_each(tmp_path):
    copy = _copy_with_toys(tmp_path / "project")
    out = tmp_path / "export"
    res = _cli(
        copy, "search", "--scheme", "toy", "--hardware", "toy-accel", "--agent", "random",
        "--episodes", "3", "--budget", "0.6", "--export", str(out), "--no-progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy"]["scheme"] == "toy" and manifest["policy"]["hardware"] == "toy-accel"
    assert (out / "sparse").is_dir() and any((out / "sparse").iterdir())
    res = _cli(copy, "cost", "--scheme", "toy", "--hardware", "toy-accel", "--density", "0.5")
    assert res.returncode == 0, res.stdout + res.stderr
    listed = json.loads(_cli(copy, "list", "--json").stdout)
    assert "toy" in listed["schemes"] and "toy-accel" in listed["hardware"]


@pytest.mark.slow
def test_a_proxy_and_an_agent_are_one_file_each(tmp_path):
    copy = _copy_with_toys(tmp_path / "project")
    res = _cli(
        copy, "search", "--agent", "toy-agent", "--proxy", "toy-proxy", "--episodes", "3",
        "--budget", "0.6", "--no-progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "toy-agent (best)" in res.stdout
    listed = json.loads(_cli(copy, "list", "--json").stdout)
    assert "toy-proxy" in listed["proxies"] and "toy-agent" in listed["agents"]


def test_scheme_declarations_have_defaults():
    """What a scheme declares beyond levels and masks, with the base class's defaults."""
    from agents.app.search import default_proxy
    from pruning import SCHEMES, get_scheme
    from pruning.base import PruningScheme
    from pruning.formats import CODECS

    assert PruningScheme.codec == "bitmask" and PruningScheme.search_proxy == "holdout"
    assert PruningScheme.removes_channels is False
    for name in SCHEMES.names():
        scheme = get_scheme(name)
        assert scheme.codec in CODECS, name
        assert default_proxy(name) == (scheme.search_proxy, dict(scheme.search_proxy_params))
    assert default_proxy("channel") == ("finetune", {"steps": 5, "batch_size": 32})
    assert get_scheme("channel").removes_channels
