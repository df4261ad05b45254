"""The episode journal: every finished episode on local disk the moment it ends.

MLflow receives episode metrics in batches (one round trip per metric would dominate a
fast search), so a killed process would lose the unsent ones. The journal closes that
gap: one JSON line per finished episode, flushed and fsynced before the next episode
starts, under ``$HWPRUNE_STATE_DIR`` (default ``~/.cache/hwprune/runs``) and mirrored
into the run as the artifact ``state/journal.jsonl``. ``hwprune search --resume`` reads
it back: the scores it holds let a search replay its own past exactly (see
``agents.app.search``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: Artifact path of the journal inside a run.
JOURNAL_ARTIFACT = "state/journal.jsonl"

#: The journal's one writing call (tests put a full disk here).
_write = os.write


def state_dir() -> Path:
    """Root of the local per-run state (``$HWPRUNE_STATE_DIR`` or ``~/.cache/hwprune/runs``)."""
    env = os.environ.get("HWPRUNE_STATE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "hwprune" / "runs"


def mount_point(path: str | os.PathLike[str]) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


class JournalWriteError(RuntimeError):
    """The episode journal could not be written (a full disk, say); the search stops.

    Nothing is half-written: the journal is cut back to its last whole episode, so
    ``hwprune search --resume RUN_ID`` continues from there once the disk has room. The
    message names the journal, the file system holding it and what to do.
    """

    def __init__(self, journal: EpisodeJournal, cause: OSError) -> None:
        self.path = journal.path
        self.run_id = journal.run_id
        try:
            self.episodes = len(journal.records())
        except (OSError, ValueError):
            self.episodes = 0
        self.errno = cause.errno
        disk = mount_point(journal.path)
        resume = (
            f"run {self.run_id} stops with its {self.episodes} episodes kept: free space "
            f"there, then `hwprune search --resume {self.run_id}`"
            if self.run_id
            else f"its {self.episodes} episodes are kept"
        )
        super().__init__(
            f"cannot write the episode journal {str(journal.path)!r}: "
            f"{cause.strerror or cause} (the disk mounted at {str(disk)!r}, which holds "
            f"HWPRUNE_STATE_DIR); {resume}"
        )


class EpisodeJournal:
    """Append-only JSON-lines file of episode records, durable line by line.

    A torn last line (the process died mid-write) is dropped on reading, so a reader
    only ever sees whole episodes. A write that fails (``ENOSPC``...) is undone (the file
    is cut back to its last whole line) and raises ``JournalWriteError``; ``close`` never
    raises.
    """

    def __init__(self, path: str | os.PathLike[str], *, run_id: str | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self._fd: int | None = None

    @classmethod
    def for_run(cls, run_id: str) -> EpisodeJournal:
        """The local journal of an MLflow run."""
        return cls(state_dir() / run_id / "journal.jsonl", run_id=run_id)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one episode and make it durable before returning.

        ``JournalWriteError`` if it cannot be written; the journal then holds exactly
        the episodes before it.
        """
        line = (json.dumps(dict(record), separators=(",", ":")) + "\n").encode("utf-8")
        start = None
        try:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._repair()
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            start = os.fstat(self._fd).st_size
            view = memoryview(line)
            while view:
                view = view[_write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            self._undo(start)
            raise JournalWriteError(self, exc) from exc

    def _undo(self, size: int | None) -> None:
        """Cut a failed append back to ``size`` bytes and close the file (best effort)."""
        if self._fd is None:
            return
        try:
            if size is not None:
                os.ftruncate(self._fd, size)
        except OSError:
            pass  # a torn last line is dropped on reading and cut before the next append
        self.close()

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
        """Close the file (appends reopen it); never raises (nothing is buffered)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


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
