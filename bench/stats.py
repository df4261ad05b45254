"""Statistics and results-file helpers shared by the bench scripts."""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean of ``values`` and its standard error (sample standard deviation over the square
    root of the count; NaN for fewer than two values)."""
    values = [float(v) for v in values]
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.fmean(values), se


def write_json(
    path: Path, doc: Any, *, indent: int = 1, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``doc`` as JSON to ``path`` atomically (a temporary file in the same folder,
    then renamed over it), creating the folder: a run killed mid-write leaves the previous
    file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=indent, default=default)
    os.replace(tmp, path)


class RowsFile:
    """A results file ``{"rows": [...], ...}``, rewritten atomically whenever it changes,
    so that an interrupted benchmark resumes where it stopped (rows already measured are
    kept) and nothing finished is lost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.doc.setdefault("rows", [])

    def has(self, **match: Any) -> bool:
        """Whether a row has every ``key=value`` of ``match``."""
        return any(all(r.get(k) == v for k, v in match.items()) for r in self.doc["rows"])

    def drop(self, **match: Any) -> None:
        """Forget the rows that have every ``key=value`` of ``match`` (not saved yet)."""
        self.doc["rows"] = [
            r for r in self.doc["rows"] if not all(r.get(k) == v for k, v in match.items())
        ]

    def add(self, rows: list[dict[str, Any]], **meta: Any) -> None:
        """Append ``rows``, update the file's top-level ``meta`` and save."""
        self.doc["rows"].extend(rows)
        self.doc.update(meta)
        self.save()

    def save(self) -> None:
        """Write the document atomically."""
        write_json(self.path, self.doc, default=float)
