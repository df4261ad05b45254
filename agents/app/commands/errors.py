"""How the CLI reports a failure the user caused: one ``error:`` line, exit code 2.

``hwprune --debug ...`` (or ``HWPRUNE_DEBUG=1``) re-raises the exception instead, so the
full traceback shows.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

# Errors go to stderr: `hwprune cost --json` and `hwprune list --json` keep stdout clean.
err_console = Console(stderr=True)

_debug = False

# The CLI library's base exception (typer vendors click in recent versions).
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def set_debug(enabled: bool) -> None:
    """Set by the global ``--debug`` option for the command being run; also sets up what
    library logs the terminal shows (``configure_logging``)."""
    global _debug
    _debug = bool(enabled)
    configure_logging(_debug)


class _NoteHandler(logging.Handler):
    """hwprune's own warnings (``hwprune.*`` loggers: a store repaired) as ``note:`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err_console.print(
                f"note: {escape(record.getMessage())}", soft_wrap=True, highlight=False
            )
        except Exception:  # noqa: BLE001 - a note must never break a command
            self.handleError(record)


#: MLflow loggers that print a whole traceback for an error the CLI reports in one line
#: (a SQLite store on a full disk: an 86-line SQLAlchemy traceback before the error line).
QUIET_LOGGERS = ("mlflow.store.db.utils",)


def configure_logging(debug: bool) -> None:
    """``hwprune.*`` warnings print as ``note:`` lines; the loggers of ``QUIET_LOGGERS``
    stay quiet, unless ``debug`` (then everything shows, tracebacks included)."""
    ours = logging.getLogger("hwprune")
    if not any(isinstance(h, _NoteHandler) for h in ours.handlers):
        ours.addHandler(_NoteHandler(logging.INFO))
    ours.propagate = False
    ours.setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.CRITICAL + 1)


def debug_enabled() -> bool:
    """Whether failures re-raise (full traceback) instead of printing one line."""
    return _debug


def error_message(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a ``KeyError``'s without the quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    one_line = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return one_line or type(exc).__name__


def fail(exc: BaseException, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on one line and exit with ``code`` (2: the user's input;
    1: the machine's, e.g. a full disk) (``--debug``: re-raise)."""
    if _debug:
        if isinstance(exc, typer.BadParameter):  # the CLI would print it without a traceback
            raise RuntimeError(error_message(exc)) from exc
        raise exc
    err_console.print(
        f"[bold red]error:[/] {escape(error_message(exc))}", soft_wrap=True, highlight=False
    )
    raise typer.Exit(code)


class OneLineUsageErrors(TyperGroup):
    """A command group whose commands report usage errors (``--seed abc``, an unknown
    option) as one ``error:`` line too, instead of a usage box."""

    def invoke(self, ctx: typer.Context) -> object:
        """Run the command; a usage error of its options ends in ``fail``."""
        try:
            return super().invoke(ctx)
        except _ClickException as exc:
            if _debug or type(exc).__name__ == "NoArgsIsHelpError":
                raise
            sub = getattr(exc, "ctx", None)
            where = f" (see `{sub.command_path} --help`)" if sub is not None else ""
            fail(ValueError(f"{exc.format_message()}{where}"))


def given_options(ctx: typer.Context) -> set[str]:
    """The command's parameters set on the command line (or by environment), not left at
    their defaults."""
    return {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")
    }


def check_resume_flags(
    ctx: typer.Context, allowed: set[str], what: str, own: str = "settings"
) -> None:
    """``ValueError`` naming every setting given beside ``--resume`` but ``allowed``: a
    resumed ``what`` (``"a run"``, ``"a sweep"``) keeps its ``own`` settings."""
    arguments = {p.name for p in ctx.command.params if p.param_type_name == "argument"}
    given = sorted(given_options(ctx) - allowed)
    if given:
        names = ", ".join(
            g.upper() if g in arguments else "--" + g.replace("_", "-") for g in given
        )
        raise ValueError(f"--resume continues {what} with its own {own}; drop {names}")
