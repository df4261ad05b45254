"""The names the CLI accepts, known without importing torch, Stable-Baselines3 or MLflow.

The registries (``envs.WORKLOADS``, ``pruning.SCHEMES``, ``hwmodels.HARDWARE``,
``envs.PROXIES``, ``agents.AGENTS``) are the one source of names: a new scheme, hardware
preset or agent is one module and one import line. Loading them imports torch,
torchvision and SB3 (10-20 s on a busy machine), too slow for ``hwprune list`` or to
refuse a misspelt flag. So their names (with descriptions, the torchvision family, the
agents' extras, the reward forms and devices) are written, once loaded, to a *name
table*: a JSON file in hwprune's cache directory, keyed by the source files that
register them (path, size and modification time of every module of the four packages)
and torchvision's version. While the key matches, the table is read instead (a few
milliseconds); when a module changes, the next command that needs the table loads the
registries again and rewrites it. Commands that load the registries anyway (``search``,
``list --json``) refresh it, and ``make`` builds it at install.

Within a process that has already imported a registry, the registry itself answers (it
may hold entries registered at run time that no file declares).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: ``hwprune list`` sections: title -> the registry kind, as its errors name it.
SECTIONS: Mapping[str, str] = {
    "models": "model",
    "schemes": "scheme",
    "hardware": "hardware preset",
    "proxies": "accuracy proxy",
    "agents": "agent",
}
#: The packages whose modules register names (the table's key covers every module).
PACKAGES = ("agents", "core", "envs", "hwmodels", "pruning")
#: Bump when the table's layout changes.
FORMAT = 2
#: The module whose import registers each section's entries, and how to reach the
#: registry once it is imported.
_LIVE = {
    "models": ("envs.workloads.builtin", "envs", "WORKLOADS"),
    "schemes": ("pruning.schemes", "pruning", "SCHEMES"),
    "hardware": ("hwmodels.presets", "hwmodels", "HARDWARE"),
    "proxies": ("envs.proxies.builtin", "envs", "PROXIES"),
    "agents": ("agents.base", "agents.base", "AGENTS"),
}


def _root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """hwprune's cache directory (``envs.workloads.builtin.cache_dir``'s rule, without torch)."""
    env = os.environ.get("HWPRUNE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hwprune"


def source_key() -> str:
    """A digest of what the registries are built from: every module of ``PACKAGES`` and
    torchvision's version file (path, size and modification time of each)."""
    import importlib.util

    digest = hashlib.sha256(f"{FORMAT}\n".encode())
    root = _root()
    files = [f for package in PACKAGES for f in _modules(root / package)]
    try:  # not importlib.metadata: looking a version up there takes 0.15 s
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        files.append(Path(spec.origin).with_name("version.py"))
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _modules(folder: Path) -> list[Path]:
    """The ``.py`` files under ``folder``, sorted (``os.scandir``: 5x faster than glob)."""
    out: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
            out.extend(_modules(Path(entry.path)))
        elif entry.name.endswith(".py"):
            out.append(Path(entry.path))
    return out


def table_path() -> Path:
    """The name table of this checkout (one file per installed copy of hwprune)."""
    where = hashlib.sha256(str(_root()).encode()).hexdigest()[:16]
    return cache_dir() / f"names-{where}.json"


def build_table() -> dict[str, Any]:
    """The name table, from the registries themselves (imports torch, SB3...)."""
    import envs.proxies.builtin  # noqa: F401  registers them
    import envs.workloads.builtin  # noqa: F401  registers them
    from agents.base import AGENTS
    from envs import PROXIES, REWARD_FORMS, WORKLOADS
    from envs.workloads.evaluation import DEVICES
    from envs.workloads.models import torchvision_models
    from hwmodels import COST_METRICS, HARDWARE, METRIC_ALIASES
    from pruning import SCHEMES

    registries = {
        "models": WORKLOADS,
        "schemes": SCHEMES,
        "hardware": HARDWARE,
        "proxies": PROXIES,
        "agents": AGENTS,
    }
    torchvision = set(torchvision_models())
    return {
        "format": FORMAT,
        "sections": {title: reg.describe() for title, reg in registries.items()},
        "torchvision": [n for n in WORKLOADS.names() if n in torchvision],
        "agent_extras": {
            name: extra
            for name in AGENTS.names()
            if (extra := getattr(AGENTS.factory(name), "extra", None))
        },
        "metrics": sorted({*COST_METRICS, *METRIC_ALIASES}),
        "reward_forms": list(REWARD_FORMS),
        "devices": list(DEVICES),
    }


def _read(path: Path, key: str) -> dict[str, Any] | None:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    return stored.get("table")


def _write(path: Path, key: str, table: dict[str, Any]) -> None:
    """Atomically, and silently not at all where the cache cannot be written."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"key": key, "table": table}, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


_table: dict[str, Any] | None = None


def table() -> dict[str, Any]:
    """The name table: read if its key matches the sources, else built and written."""
    global _table
    if _table is None:
        key, path = source_key(), table_path()
        _table = _read(path, key)
        if _table is None:
            if sys.stderr.isatty():  # a person waits: say why (not in logs or pipes)
                print(
                    "indexing hwprune's models, schemes, hardware and agents (once per "
                    "install or change of its modules; about 10 s) ...",
                    file=sys.stderr,
                    flush=True,
                )
            _table = build_table()
            _write(path, key, _table)
    return _table


def refresh() -> None:
    """Rewrite the table if it is stale; for commands that loaded the registries anyway
    (then building it costs nothing more)."""
    global _table
    key, path = source_key(), table_path()
    if _read(path, key) is None:
        _table = build_table()
        _write(path, key, _table)


def names(section: str) -> dict[str, str]:
    """Name -> description of every entry of ``section`` (a key of ``SECTIONS``): from
    the registry itself where this process has loaded it, else from the name table."""
    registers, module, attr = _LIVE[section]
    if registers in sys.modules:
        return getattr(sys.modules[module], attr).describe()
    return table()["sections"][section]


def check_name(section: str, name: str) -> str:
    """``name`` if ``section`` has it, else the registry's own ``KeyError`` (did you
    mean, valid choices)."""
    choices = names(section)
    if name not in choices:
        from core.registry import unknown_name  # stdlib only: no numpy, no torch

        raise unknown_name(SECTIONS[section], name, choices)
    return name


def check_choice(setting: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if among ``choices``, else ``ValueError`` naming them (as ``SearchConfig``
    words it)."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {setting} {value!r}; valid choices: {', '.join(choices)}")
    return value


def check_names(
    *,
    model: str | None = None,
    scheme: str | None = None,
    hardware: str | None = None,
    metric: str | None = None,
    agent: str | None = None,
    proxy: str | None = None,
    shortlist_proxy: str | None = None,
    reward: str | None = None,
    device: str | None = None,
) -> None:
    """The names of a search's settings (None: not given), checked against the name
    table: ``KeyError``/``ValueError`` with the messages the full checks give, and
    ``agents.extras.MissingExtra`` for an agent whose extra is not installed."""
    for section, value in (
        ("models", model),
        ("schemes", scheme),
        ("hardware", hardware),
        ("agents", agent),
        ("proxies", proxy),
    ):
        if value is not None:
            check_name(section, value)
    if metric is not None and metric not in table()["metrics"]:
        valid = ", ".join(sorted(table()["metrics"]))  # hwmodels.resolve_metric's words
        raise ValueError(f"unknown cost metric {metric!r}; valid choices: {valid}")
    if shortlist_proxy is not None:
        try:
            check_name("proxies", shortlist_proxy)
        except KeyError as exc:
            raise KeyError(f"shortlist_proxy {shortlist_proxy!r}: {exc.args[0]}") from None
    if reward is not None:
        check_choice("reward", reward, table()["reward_forms"])
    if device is not None:
        check_choice("device", device, table()["devices"])
    extra = table()["agent_extras"].get(agent) if agent is not None else None
    if extra is not None:
        from agents.extras import require_extra

        require_extra(extra, f"agent {agent!r}")
