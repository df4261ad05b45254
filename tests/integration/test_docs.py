"""The README stays a short, true guide; docs/BENCHMARKS.md stays what the results say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Commands the README's CLI table must name (issue 25).
REQUIRED_COMMANDS = (
    "search",
    "search --resume",
    "train",
    "finetune",
    "sweep",
    "export",
    "runs",
    "compare",
    "cost",
    "server",
    "list",
)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _cli_table_commands() -> list[str]:
    """`hwprune ...` commands in the first cells of the README's CLI table."""
    section = _readme().split("## The CLI at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `hwprune")]
    return [m for row in rows for m in re.findall(r"`hwprune ([^`]+)`", row.split(" | ")[0])]


def test_readme_is_short() -> None:
    lines = len(_readme().splitlines())
    assert lines <= 300, f"README.md has {lines} lines; the guide's limit is 300"


def test_readme_links_to_docs_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#\s]+)", _readme())
    assert links, "the README links no docs/ page"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README links missing files: {missing}"
    for page in ("CLI", "EXPORT", "SWEEPS", "BUDGET", "EXTENDING", "BENCHMARKS"):
        assert f"docs/{page}.md" in links, f"README does not link docs/{page}.md"


def test_docs_link_to_pages_that_exist() -> None:
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([A-Za-z_]+\.md)", page.read_text(encoding="utf-8")):
            assert (ROOT / "docs" / link).is_file(), f"{page.name} links missing {link}"


def test_readme_cli_table_names_real_commands() -> None:
    from agents.app.cli import _register_optional_commands, app

    if not any(c.name == "train" for c in app.registered_commands):
        _register_optional_commands()
    root = typer.main.get_command(app)
    named = _cli_table_commands()
    assert named, "no `hwprune ...` rows in the README's CLI table"
    for entry in named:
        command = root
        for word in entry.split():
            if word.isupper():  # an argument: RUN_ID, DIR, WORKLOAD
                continue
            if word.startswith("-"):
                options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                assert word in options, f"README: `hwprune {entry}`: {word} is not an option"
                continue
            subcommands = getattr(command, "commands", {})
            assert word in subcommands, f"README: `hwprune {entry}`: no command {word!r}"
            command = subcommands[word]
    # What each row names, arguments (RUN_ID, DIR) left out: "search --resume", "server start".
    paths = {" ".join(w for w in entry.split() if not w.isupper()) for entry in named}
    for required in REQUIRED_COMMANDS:
        assert any(p == required or p.startswith(required + " ") for p in paths), (
            f"the README's CLI table does not name `hwprune {required}`"
        )


def _report_module():
    from bench import report

    return report


@pytest.mark.slow
def test_benchmarks_page_is_what_the_reports_print() -> None:
    """docs/BENCHMARKS.md equals bench/report.py's rendering of the committed results
    (regenerate with `python -m bench.report`)."""
    report = _report_module()
    assert report.OUT.is_file(), "docs/BENCHMARKS.md is missing: run python -m bench.report"
    assert report.OUT.read_text(encoding="utf-8") == report.render(), (
        "docs/BENCHMARKS.md is stale: run python -m bench.report"
    )
