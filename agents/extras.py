"""The optional parts of hwprune (pyproject.toml's extras) and the check that says which
extra to install when a command needs one that is missing.

``pip install hwprune`` gives search, export, cost, list, runs, compare, finetune and
profile-gpu; ``pip install 'hwprune[all]'`` (what ``make`` installs) adds every extra.
Importing this module imports nothing: it only looks modules up.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

#: Extra -> (distribution, module it provides) of each package it installs; the
#: distributions are those of ``[project.optional-dependencies]``
#: (tests/integration/test_extras.py).
EXTRAS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "sweep": (("ray", "ray"),),
    "server": (("psycopg2-binary", "psycopg2"),),
    "baselines": (("optuna", "optuna"), ("cmaes", "cmaes")),
    "onnx": (("onnxruntime", "onnxruntime"),),
}

#: What each extra is for, in the words of an error message.
PURPOSES: Mapping[str, str] = {
    "sweep": "Ray, which runs a sweep's searches",
    "server": "the PostgreSQL driver (psycopg2) of the tracking server",
    "baselines": "Optuna and cmaes, behind the tpe and cmaes agents",
    "onnx": "onnxruntime, which runs ONNX models",
}


class MissingExtra(ImportError, ValueError):
    """A command needs an optional part that is not installed; the message says which
    extra installs it. A ``ValueError`` too, so that the CLI reports it as one line."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    missing = []
    for _dist, module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extra: str, what: str, hint: str = "") -> None:
    """``MissingExtra`` naming ``pip install 'hwprune[extra]'`` unless every module of
    ``extra`` is installed. ``what`` is what needs it (``"hwprune sweep"``); ``hint`` an
    alternative that needs no extra, if any."""
    missing = missing_modules(extra)
    if missing:
        alternative = f", or {hint}" if hint else ""
        raise MissingExtra(
            f"{what} needs {PURPOSES[extra]}, an optional part of hwprune that is not "
            f"installed (no module {', '.join(map(repr, missing))}): "
            f"pip install 'hwprune[{extra}]'{alternative}",
            name=missing[0],
        )
