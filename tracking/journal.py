"""The episode journal: every finished episode on local disk the moment it ends.

MLflow receives episode metrics in batches (one round trip per metric would dominate a
fast search), so a killed process would lose the unsent ones. The journal closes that
gap: one JSON line per finished episode, flushed and fsynced before the next episode
starts, under ``$HWPRUNE_STATE_DIR`` (default ``~/.cache/hwprune/runs``) and mirrored
into the run as the artifact ``state/journal.jsonl``. ``hwprune search --resume`` reads
it back: the scores it holds let a search replay its own past exactly (see
``agents.search``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Artifact path of the journal inside a run.
JOURNAL_ARTIFACT = "state/journal.jsonl"


def state_dir() -> Path:
    """Root of the local per-run state (``$HWPRUNE_STATE_DIR`` or ``~/.cache/hwprune/runs``)."""
    env = os.environ.get("HWPRUNE_STATE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hwprune" / "runs"


class EpisodeJournal:
    """Append-only JSON-lines file of episode records, durable line by line.

    A torn last line (the process died mid-write) is dropped on reading, so a reader
    only ever sees whole episodes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = None

    @classmethod
    def for_run(cls, run_id: str) -> EpisodeJournal:
        """The local journal of an MLflow run."""
        return cls(state_dir() / run_id / "journal.jsonl")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one episode and make it durable before returning."""
        if self._fh is None:
            self._repair()
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
        self._fh.write(json.dumps(dict(record), separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _repair(self) -> None:
        """Cut a torn last line, so that appends start on a line of their own."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)

    def records(self) -> list[dict[str, Any]]:
        """Every whole episode written so far, in order."""
        return list(read_records(self.path))

    def close(self) -> None:
        """Close the file (appends reopen it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The whole lines of a journal file; a torn or corrupt last line is skipped."""
    p = Path(path)
    if not p.exists():
        return
    lines = p.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the torn tail of a killed writer
                return
            raise ValueError(f"journal {str(p)!r} is corrupt at line {i + 1}") from None
