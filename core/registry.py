"""A small generic name -> factory registry shared by every pluggable part of hwprune.

Workloads, pruning schemes, hardware presets, accuracy proxies and agents are all looked
up by name, so that every configuration is plain strings and numbers that round-trip
through YAML, ``gym.make`` keyword arguments and MLflow params.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_RST_LITERAL = re.compile(r"``(.+?)``")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText literal markup: ````group_size```` -> ``group_size``."""
    return _RST_LITERAL.sub(r"\1", text)


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> KeyError:
    """The ``KeyError`` for a ``name`` that is not among ``choices``: the close matches
    ("Did you mean") and every valid choice. Shared by ``Registry.check`` and the CLI's
    light name checks (``agents.app.catalog``), so that both say the same."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=3)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return KeyError(f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(choices)}")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise ``KeyError`` with close matches.

    Args:
        kind: what the registry holds (``"scheme"``, ``"hardware preset"``...), used in
            error messages.
        providers: modules whose import registers entries; imported on the first lookup,
            so that importing the registry (e.g. for ``hwprune --help``) stays cheap.
    """

    def __init__(self, kind: str, providers: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._help: dict[str, str] = {}
        self._providers = providers

    @property
    def _entries(self) -> dict[str, Callable[..., T]]:
        if self._providers:
            import importlib

            providers, self._providers = self._providers, ()
            for module in providers:
                importlib.import_module(module)
        return self._factories

    def register(
        self, name: str, factory: Callable[..., T] | None = None, *, help: str = ""
    ) -> Callable[..., T] | Callable[[Callable[..., T]], Callable[..., T]]:
        """Register ``factory`` under ``name``; usable as a decorator when ``factory`` is None."""

        def _add(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = fn
            self._help[name] = help or (fn.__doc__ or "").strip().split("\n")[0]
            return fn

        return _add if factory is None else _add(factory)

    def check(self, name: str) -> str:
        """Return ``name`` if registered, else raise ``KeyError`` naming the valid choices."""
        if name not in self._entries:
            raise unknown_name(self.kind, name, self.names())
        return name

    def build(self, name: str, **kwargs: object) -> T:
        """Instantiate the entry ``name`` with keyword arguments."""
        return self._factories[self.check(name)](**kwargs)

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``."""
        return self._factories[self.check(name)]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description as plain text (no RST markup), for ``hwprune list``."""
        self._entries  # noqa: B018 - imports the providers
        return {name: plain_text(text) for name, text in self._help.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
