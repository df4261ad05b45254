"""Typed parameters with ranges and defaults: the one schema behind every user setting.

A ``Param`` states a setting once: its type, default, valid range or choices and help
text. A ``Schema`` is an ordered set of them; ``Schema.check`` turns user values (CLI
flags, YAML, ``KEY=VALUE`` overrides) into a normalised dict or raises one
``ValueError`` naming the field, the value given and what would be accepted, so that
the CLI prints it as one ``error:`` line. Hardware, scheme, proxy and agent parameters,
``TaskSpec`` and ``SearchConfig`` all check their values here, and the CLI takes its
option defaults and help from the same ``Param``.

Plain Python with no imports from the rest of hwprune (nor from numpy or torch), so that
any layer may use it and ``hwprune --help`` stays cheap.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: The kinds of value a ``Param`` holds. ``list`` is a list or tuple (kept as nested
#: tuples, so that frozen parameter records stay hashable); ``any`` is not checked here
#: (a default such as ``None`` says nothing of the type; the owner checks it).
Kind = Literal["int", "float", "bool", "str", "choice", "list", "any"]
KINDS: tuple[str, ...] = ("int", "float", "bool", "str", "choice", "list", "any")

#: A bound: a number, or a function giving it at check time (the CPUs or memory of this
#: machine), or None for no bound.
Bound = float | Callable[[], float] | None

# YAML 1.1 (PyYAML) reads ``1e-3`` as a string: a float needs a dot (``1.0e-3``).
_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def yaml_hint(value: Any) -> str:
    """Why a number written ``1e-3`` in YAML arrived as text, or ``""`` for other values."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return f" (YAML reads {value} as text; write it with a dot, e.g. {float(value)!r})"
    return ""


def parse_scientific(text: Any) -> Any:
    """``"1e-3"`` -> ``0.001``: numbers YAML 1.1 leaves as text; anything else unchanged."""
    if isinstance(text, str) and _SCIENTIFIC.match(text.strip()):
        return float(text)
    return text


def format_number(x: float) -> str:
    """A bound as messages show it: ``1e-06`` and ``0.5`` for floats, ints as they are."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def interval(low: float, high: float, low_open: bool = False, high_open: bool = False) -> str:
    """``(0, 1]``: the interval between two bounds in the usual notation."""
    return (
        f"{'(' if low_open else '['}{format_number(low)}, "
        f"{format_number(high)}{')' if high_open else ']'}"
    )


def describe_range(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    """``in (0, 1]``, ``>= 1``, ``< 5``, or ``""`` with no bound, for messages."""
    if low is not None and high is not None:
        return f"in {interval(low, high, low_open, high_open)}"
    if low is not None:
        return f"{'>' if low_open else '>='} {format_number(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {format_number(high)}"
    return ""


def _resolve(bound: Bound) -> float | None:
    return bound() if callable(bound) else bound


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class Param:
    """One typed setting: name, kind, default, valid range or choices, help text.

    Attributes:
        name: the setting's name, as users write it (``episodes``, ``group_size``).
        kind: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``),
            ``list`` or ``any`` (not checked here).
        default: the value when none is given; the one place it is stated.
        low / high: bounds of a number (``None``: unbounded; a function: read at check
            time, e.g. the CPUs of this process); ``low_open`` / ``high_open`` exclude them.
        choices: the valid values of a ``choice``.
        nullable: ``None`` (YAML ``null``) is accepted too.
        ceiling: ``high`` is a sanity limit (what a machine holds, what makes sense)
            rather than part of the meaning: only a value above it is told of it (with
            ``why``), a value below ``low`` is told the floor alone.
        why: where the ceiling comes from, shown when it is exceeded.
        out_of_range: the message of a number outside its bounds, a ``str.format``
            template over ``label``, ``value``, ``range`` (``in (0, 1]``) and
            ``interval`` (``(0, 1]``); the default is ``label must be range, got value``.
        help: one line for ``--help`` and ``Schema.describe``.
    """

    name: str
    kind: Kind
    default: Any = None
    low: Bound = None
    high: Bound = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    ceiling: bool = False
    why: str = ""
    out_of_range: str = "{label} must be {range}, got {value!r}"
    help: str = ""

    def __post_init__(self) -> None:
        # Mistakes in a schema are the programmer's: caught when the module is imported.
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if (self.kind == "choice") != bool(self.choices):
            raise ValueError(f"param {self.name!r}: choices go with kind 'choice' only")
        has_bounds = self.low is not None or self.high is not None
        if has_bounds and self.kind not in ("int", "float"):
            raise ValueError(f"param {self.name!r}: bounds apply to int and float only")

    def bounds(self) -> tuple[float | None, float | None]:
        """``(low, high)`` as numbers now (a bound given as a function is called)."""
        return _resolve(self.low), _resolve(self.high)

    def range_text(self) -> str:
        """The valid range as messages write it (``in [1, 100]``, ``> 0``; ``""``: none)."""
        low, high = self.bounds()
        return describe_range(low, high, self.low_open, self.high_open)

    def expected(self) -> str:
        """What is accepted, as a phrase: ``an integer in [1, 100]``, ``true or false``."""
        null = " or null" if self.nullable else ""
        if self.kind == "int":
            bounds = self.range_text()
            return f"an integer{' ' + bounds if bounds else ''}{null}"
        if self.kind == "float":
            bounds = self.range_text()
            return f"a number{' ' + bounds if bounds else ''}{null}"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}{null}"
        return {"bool": "true or false", "str": "a string", "list": "a list", "any": "any value"}[
            self.kind
        ] + null

    def check(self, value: Any, *, label: str | None = None) -> Any:
        """``value`` normalised (ints as floats where a number is expected, lists as
        tuples), else ``ValueError`` naming ``label`` (default: the name), the value and
        what is accepted. Bools are never numbers: ``true`` is not ``1``."""
        label = self.name if label is None else label
        if value is None and self.nullable:
            return None
        if self.kind == "int":
            return self._check_int(value, label)
        if self.kind == "float":
            return self._check_float(value, label)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{label} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(
                    f"unknown {label} {value!r}; valid choices: {', '.join(self.choices)}"
                )
            return value
        if self.kind == "str" and not isinstance(value, str):
            raise ValueError(f"{label} must be {self.expected()}, got {value!r}")
        if self.kind == "list":
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{label} must be {self.expected()}, got {value!r}")
            return _as_tuple(value)
        return value

    def _check_float(self, value: Any, label: str) -> float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = None
        if number is None or not math.isfinite(number):
            raise ValueError(f"{label} must be {self.expected()}, got {value!r}{yaml_hint(value)}")
        low, high = self.bounds()
        if (low is not None and (number < low or (self.low_open and number == low))) or (
            high is not None and (number > high or (self.high_open and number == high))
        ):
            raise self._out_of_range(label, value, low, high)
        return number

    def _check_int(self, value: Any, label: str) -> int:
        low, high = self.bounds()
        # A ceiling is named only to values above it (see ``ceiling``).
        floor = describe_range(low, None) if self.ceiling else self.range_text()
        want = f"an integer{' ' + floor if floor else ''}"
        ok = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value, ok = int(value), True  # YAML and parse_scientific give 1e6 as a float
        if not ok or (low is not None and value < low):
            raise ValueError(f"{label} must be {want}, got {value!r}{yaml_hint(value)}")
        if high is not None and value > high:
            if self.ceiling:
                reason = f" ({self.why})" if self.why else ""
                raise ValueError(
                    f"{label} must be an integer {self.range_text()}{reason}, got {value!r}"
                )
            raise ValueError(f"{label} must be {want}, got {value!r}")
        return int(value)

    def _out_of_range(
        self, label: str, value: Any, low: float | None, high: float | None
    ) -> ValueError:
        span = (
            interval(low, high, self.low_open, self.high_open)
            if low is not None and high is not None
            else self.range_text()
        )
        text = self.out_of_range.format(
            label=label, value=value, range=self.range_text(), interval=span
        )
        return ValueError(text)

    def describe(self) -> str:
        """One help line: ``name: an integer in [1, 100] (default 6). Help text.``"""
        text = f"{self.name}: {self.expected()} (default {self.default!r})"
        return f"{text}. {self.help}" if self.help else text


def infer_kind(default: Any) -> Kind:
    """The kind a parameter has from its default: ``8`` -> ``int``, ``(..)`` -> ``list``;
    ``any`` for a default that does not say (``None``, an object)."""
    if isinstance(default, bool):  # before int: True is an int to Python
        return "bool"
    for python_type, kind in ((int, "int"), (float, "float"), (str, "str"), (tuple, "list")):
        if isinstance(default, python_type):
            return kind  # type: ignore[return-value]
    return "any"


class Schema:
    """An ordered set of ``Param``: check a mapping of values, list defaults and help.

    ``check`` is the one place user values are typed and bounded; ``defaults`` and
    ``describe`` are what a CLI or a dataclass takes from it, so that no default or
    range is restated.
    """

    def __init__(self, params: Iterable[Param]) -> None:
        self._params: dict[str, Param] = {}
        for param in params:
            if param.name in self._params:
                raise ValueError(f"param {param.name!r} is declared twice")
            self._params[param.name] = param

    @classmethod
    def from_defaults(cls, defaults: Mapping[str, Any]) -> Schema:
        """Params typed by their defaults (``infer_kind``): for parameter records whose
        dataclass or signature states the defaults and checks the ranges itself."""
        return cls(Param(name, infer_kind(value), value) for name, value in defaults.items())

    @classmethod
    def from_signature(cls, fn: Callable[..., Any], *, skip: Iterable[str] = ()) -> Schema:
        """The keyword parameters of ``fn`` (a factory or a constructor), typed by their
        defaults; a parameter without a default is ``any``. ``skip`` leaves some out
        (``workload``: not a user setting)."""
        skipped = set(skip)
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return cls.from_defaults(
            {
                p.name: None if p.default is inspect.Parameter.empty else p.default
                for p in inspect.signature(fn).parameters.values()
                if p.kind in keyword and p.name not in skipped
            }
        )

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    def __len__(self) -> int:
        return len(self._params)

    def names(self) -> list[str]:
        """Param names, in declaration order."""
        return list(self._params)

    def default(self, name: str) -> Any:
        """The default of param ``name``."""
        return self._params[name].default

    def defaults(self) -> dict[str, Any]:
        """Name -> default of every param."""
        return {p.name: p.default for p in self}

    def check(
        self,
        values: Mapping[str, Any],
        *,
        owner: str = "",
        label: Callable[[str], str] | None = None,
        partial: bool = False,
    ) -> dict[str, Any]:
        """``values`` checked and normalised, in declaration order, defaults filled in
        (``partial``: only the values given, e.g. overrides of an existing record).

        ``ValueError`` for an unknown name (``unknown parameter(s) x for OWNER; valid:
        ...``) or the first bad value (``Param.check``; ``label(name)`` names it, e.g.
        ``hardware parameter 'n_pe' of 'accel-kang-16'``).
        """
        unknown = sorted((str(k) for k in values if k not in self._params), key=str)
        if unknown:
            where = f" for {owner}" if owner else ""
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}{where}; "
                f"valid: {', '.join(self._params) or '(none)'}"
            )
        # Checked in the order given, so that the first bad value a user wrote is named.
        checked = {
            key: self._params[key].check(value, label=None if label is None else label(key))
            for key, value in values.items()
        }
        return {
            p.name: checked[p.name] if p.name in checked else p.default
            for p in self
            if p.name in checked or not partial
        }

    def describe(self) -> list[str]:
        """One help line per param (``Param.describe``), in declaration order."""
        return [p.describe() for p in self]
