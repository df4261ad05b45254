"""Checks of user-given values: types and ranges, with messages naming the valid ones.

Every checker raises ``ValueError`` whose message names the setting, the bad value and
what would be accepted, so that the CLI can print it as one ``error:`` line. The type
and range checks of single values (``check_number``, ``check_int``...) are shorthands
for a ``core.params.Param``, which states the rules and the wording once; this module
adds the limits of this machine, user files and output targets.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.params import Param, parse_scientific, yaml_hint

# --- upper bounds: what a machine can hold, or what makes sense -------------------------

#: Most evaluated episodes of one search. Searches in the literature run hundreds (AMC:
#: 400) and this product's defaults 300; each episode costs a journal line (~0.5 KB) and a
#: point per episode metric in the store, so a million episodes is already ~0.5 GB of
#: journal and days of evaluations. Anything larger is a typo, not a search.
MAX_EPISODES = 1_000_000

#: Most fine-tune SGD steps (``finetune_steps``, ``finetune --steps``). One epoch of
#: CIFAR-10 or Fashion-MNIST at batch 64 is under 1,000 steps: a million steps is over a
#: thousand epochs, beyond any recovery schedule in the pruning literature.
MAX_FINETUNE_STEPS = 1_000_000

#: Most fine-tune epochs (``finetune --epochs``): recovery schedules in the pruning
#: literature run at most a few hundred epochs.
MAX_FINETUNE_EPOCHS = 1_000

#: Most budgets evaluated on a front (``--points``). Each point is a test evaluation and
#: an exported pruned model (every format, logged to the run); 100 points already space
#: budgets by under 0.01 of the range.
MAX_FRONT_POINTS = 100

#: Share of the machine's memory a replay buffer (``buffer_size``) or one sampled batch
#: (``batch_size``) may take: the rest holds the workload, its data and the evaluations.
REPLAY_MEMORY_SHARE = 0.5

#: Widest hidden layer of an agent's networks (``net_arch``). AMC uses 300; two hidden
#: layers of 16,384 are 1 GiB of float32 weights per network before the optimiser's state.
MAX_NET_WIDTH = 16_384

#: Parallel environments (``n_envs``) per CPU this process may use. Each is a process with
#: its own copy of the task (network and data); beyond a few per CPU they only time-slice,
#: and thousands exhaust memory and the process table.
MAX_ENVS_PER_CPU = 4


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; else the machine's count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def memory_bytes() -> int:
    """The memory this process may use: physical memory, or a lower cgroup limit."""
    import os

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def check_count(name: str, value: Any, *, minimum: int, maximum: int, why: str = "") -> int:
    """``value`` as an int in ``[minimum, maximum]``, the maximum a ceiling
    (``core.params.Param.ceiling``): ``why`` says where it comes from (``"the CPUs this
    process may use"``) in the message of a value above it."""
    return Param(name, "int", low=minimum, high=maximum, ceiling=True, why=why).check(value)


def check_threads(name: str, value: Any) -> int:
    """``value`` as a thread count: an int in [1, the CPUs this process may use]."""
    return check_count(
        name, value, minimum=1, maximum=usable_cpus(), why="the CPUs this process may use"
    )


def parse_overrides(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML scalars (``0.5``, ``true``).

    ``1e-3`` is read as a number too (YAML 1.1 would keep it as text). ``ValueError``
    naming the item (and ``what`` it overrides) if it is not ``KEY=VALUE`` or its value
    is not YAML.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} override {item!r} is not KEY=VALUE")
        try:
            out[key] = parse_scientific(yaml.safe_load(value))
        except yaml.YAMLError:
            raise ValueError(
                f"{what} override {item!r}: {value!r} is not a YAML value (quote text)"
            ) from None
    return out


def number_text(value: Any) -> Any:
    """A number written as text (``"1e-3"``, as YAML 1.1 reads it) as a float; any other
    value unchanged, for ``Param.check`` to judge."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    coerce: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds, else ``ValueError``.

    ``coerce`` also accepts numbers written as text (``number_text``).
    """
    param = Param(name, "float", low=low, high=high, low_open=low_open, high_open=high_open)
    return param.check(number_text(value) if coerce else value)


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int within ``[minimum, maximum]`` (integral floats accepted)."""
    return Param(name, "int", low=minimum, high=maximum).check(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (YAML ``true``/``false``), else ``ValueError``."""
    return Param(name, "bool").check(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    return Param(name, "choice", choices=tuple(choices)).check(value)


def check_int_list(name: str, value: Any, *, minimum: int = 1) -> list[int]:
    """A list of ints, each ``>= minimum`` (e.g. layer widths ``[64, 64]``)."""
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value
    ):
        raise ValueError(
            f"{name} must be a list of integers >= {minimum} (e.g. [64, 64]), got {value!r}"
        )
    return [int(v) for v in value]


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "a mapping of KEY: VALUE"
    if origin in (list, tuple) or hint in (list, tuple):
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, (list, tuple))
    return True  # a type these checks do not know: left to the code that uses it


def check_type(name: str, value: Any, hint: Any) -> Any:
    """``value`` if it fits the type annotation ``hint`` (``str | None``, ``float``,
    ``dict[str, Any]``...), else ``ValueError`` naming the expected type."""
    if not _matches(value, hint):
        raise ValueError(f"{name} must be {_type_name(hint)}, got {value!r}{yaml_hint(value)}")
    return value


def check_fields(obj_type: type, values: Mapping[str, Any], *, where: str = "") -> None:
    """Check each of ``values`` against the annotation of that field of ``obj_type``.

    Keys that are not fields are left alone (the caller names unknown keys); ``where``
    prefixes the message (``"config file 'search.yml': "``).
    """
    hints = typing.get_type_hints(obj_type)
    for key, value in values.items():
        if key in hints:
            try:
                check_type(key, value, hints[key])
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None


def read_user_file(path: str | Path, where: str, kind: str) -> str:
    """The UTF-8 text of a file a user named; one clear error naming it otherwise.

    ``where`` names the file in messages (``"policy file 'p.json'"``), ``kind`` what it
    should be (``"JSON"``). ``FileNotFoundError`` when it is missing, else ``ValueError``.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{where} does not exist") from exc
    except IsADirectoryError as exc:
        raise ValueError(f"{where} is a directory, not a {kind} file") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text") from exc
    except OSError as exc:
        raise ValueError(f"cannot read {where}: {exc.strerror or exc}") from exc


def read_yaml_mapping(path: str | Path, where: str) -> dict[str, Any]:
    """A YAML file a user named that must hold a mapping (empty: ``{}``); ``ValueError``
    naming the file (``where``) and the line of a syntax error otherwise."""
    import yaml

    try:
        text = read_user_file(path, where, "YAML")
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"{where} is not valid YAML: {problem}{at}") from exc
    except RecursionError as exc:
        raise ValueError(f"{where} is not valid YAML: nested too deeply") from exc
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise ValueError(
            f"{where} is not a YAML mapping of setting: value (it holds a "
            f"{type(settings).__name__})"
        )
    return settings


def check_output_dir(path: str | Path, what: str, *, may_exist: bool = True) -> Path:
    """``path`` if a directory can be written there; ``ValueError`` naming it otherwise.

    Checked before any work, as the tracking store is: an output target that cannot be
    written (``/proc/x``, a read-only folder, a path through a file) must not cost a
    search first. ``path`` may exist (a directory written into) or not (created with its
    parents later); either way a hidden probe directory is created and removed at once
    where the first write will land, so a read-only file system, a pseudo-file system
    and permissions are all caught, for root too. ``may_exist=False`` also refuses an
    existing ``path`` (``FileExistsError``). ``what`` names the option (``--export``).
    """
    shown = repr(str(path))
    target = Path(path).expanduser().absolute()
    if target.exists() or target.is_symlink():
        if not may_exist:
            raise FileExistsError(f"{what} {shown} already exists")
        if not target.is_dir():
            raise ValueError(f"cannot write {what} {shown}: it is a file, not a directory")
        where = target
    else:
        where = target.parent
        while not where.exists() and where != where.parent:
            where = where.parent
        if not where.is_dir():
            raise ValueError(f"cannot write {what} {shown}: {str(where)!r} is not a directory")
    problem = unwritable(where)
    if problem is not None:
        raise ValueError(
            f"cannot write {what} {shown}: directory {str(where)!r} is not writable ({problem})"
        )
    return target


def unwritable(directory: str | Path) -> str | None:
    """None if a new entry can be created in the existing ``directory``, else why not.

    Probes by creating (and at once removing) a hidden directory there: ``os.access``
    answers yes to root on ``/proc`` and says nothing of read-only file systems.
    """
    import os
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hwprune-write-check-", dir=directory))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_output_file(path: str | Path, what: str) -> Path:
    """``path`` if a file can be written there (its directory is ``check_output_dir``'s,
    and it is not a directory); ``ValueError`` naming it otherwise."""
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise ValueError(f"cannot write {what} {str(path)!r}: it is a directory")
    check_output_dir(target.parent, what)
    return target
