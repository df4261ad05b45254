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

ROOT = Path(__file__).resolve().parents[1]
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
