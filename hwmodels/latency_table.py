"""Measured per-layer latency tables (NetAdapt style) with staircase interpolation.

A table is JSON written by ``agents/app/commands/profile_gpu.py``::

    {"device": "cuda:0 NVIDIA ...", "dtype": "float32", "entries": [
      {"kind": "conv", "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
       "groups": 1, "in_hw": [56, 56], "batch": 1,
       "out_channels": [8, 16, ..., 64], "in_channels": [16, 32, 64],
       "latency_s": [[...], ...]}      # len(out_channels) x len(in_channels), seconds
    ]}

An entry is matched on everything but the channel counts. Latency between measured
channel counts is a step, never a line: a GPU's latency is a staircase with cliffs, so a
linear interpolation would invent speedups that do not exist. ``step="lower"`` takes the
nearest measured count at or below the requested one (the measured point's latency
holds until the next measured point); ``step="upper"`` the nearest at or above.
``step="linear"`` interpolates bilinearly between the measured counts around the
requested one (a CPU table measured at every count the pruning scheme can choose,
NetAdapt style, is then read exactly at those counts); outside the measured range it
holds the nearest measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hwmodels.layer import LayerSpec

STEPS: tuple[str, ...] = ("lower", "upper", "linear")
_SHAPE_KEYS: tuple[str, ...] = ("kind", "kernel", "stride", "padding", "groups", "in_hw", "batch")


def shape_key(layer: LayerSpec) -> tuple:
    """What an entry is matched on: the layer's shape without its channel counts."""
    return (
        layer.kind,
        tuple(layer.kernel),
        tuple(layer.stride),
        tuple(layer.padding),
        layer.groups,
        tuple(layer.in_hw),
        layer.batch,
    )


def _entry_key(entry: dict) -> tuple:
    missing = [k for k in _SHAPE_KEYS if k not in entry]
    if missing:
        raise ValueError(f"latency table entry lacks {', '.join(missing)}")
    return (
        entry["kind"],
        *(tuple(int(v) for v in entry[k]) for k in ("kernel", "stride", "padding")),
        int(entry["groups"]),
        tuple(int(v) for v in entry["in_hw"]),
        int(entry["batch"]),
    )


def _step_index(measured: np.ndarray, value: int, step: str) -> int:
    """Index of the measured count the staircase uses for ``value``."""
    if step == "lower":
        idx = int(np.searchsorted(measured, value, side="right")) - 1
        return max(idx, 0)  # below the smallest measurement: the smallest one
    idx = int(np.searchsorted(measured, value, side="left"))
    return min(idx, len(measured) - 1)


def _bracket(measured: np.ndarray, value: int) -> tuple[tuple[int, int], float]:
    """Indices of the measured counts around ``value`` and the weight of the upper one."""
    hi = int(np.searchsorted(measured, value, side="left"))
    if hi <= 0:
        return (0, 0), 0.0
    if hi >= len(measured):
        return (len(measured) - 1, len(measured) - 1), 0.0
    lo = hi - 1
    if measured[hi] == value:
        return (hi, hi), 0.0
    return (lo, hi), float((value - measured[lo]) / (measured[hi] - measured[lo]))


@dataclass(frozen=True)
class Grid:
    """Latencies of one layer shape over a grid of (out, in) channel counts."""

    out_channels: np.ndarray
    in_channels: np.ndarray
    latency_s: np.ndarray

    def lookup(self, out_channels: int, in_channels: int, step: str) -> float:
        """Latency at the given channel counts: a staircase step or a bilinear blend."""
        if step == "linear":
            (i0, i1), wi = _bracket(self.out_channels, out_channels)
            (j0, j1), wj = _bracket(self.in_channels, in_channels)
            lat = self.latency_s
            low = lat[i0, j0] * (1 - wj) + lat[i0, j1] * wj
            high = lat[i1, j0] * (1 - wj) + lat[i1, j1] * wj
            return float(low * (1 - wi) + high * wi)
        i = _step_index(self.out_channels, out_channels, step)
        j = _step_index(self.in_channels, in_channels, step)
        return float(self.latency_s[i, j])


@dataclass(frozen=True)
class LatencyTable:
    """A parsed latency table: shape key -> channel grid."""

    device: str
    grids: dict[tuple, Grid]
    #: Fixed cost of one inference call, measured apart and subtracted from every entry
    #: (``run_overhead_s`` in the JSON; CPU tables): a network pays it once.
    run_overhead_s: float = 0.0
    #: Channel step of the measured grid (``channel_step`` in the JSON; 0 if not given).
    channel_step: int = 0

    def lookup(
        self, layer: LayerSpec, out_channels: int, in_channels: int, *, step: str = "lower"
    ) -> float | None:
        """Measured latency of ``layer`` at the given channel counts; None if not measured."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; valid: {', '.join(STEPS)}")
        grid = self.grids.get(shape_key(layer))
        return None if grid is None else grid.lookup(out_channels, in_channels, step)


def parse_latency_table(data: dict) -> LatencyTable:
    """Validate and parse a table's JSON object."""
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError("latency table must be a JSON object with an 'entries' list")
    grids: dict[tuple, Grid] = {}
    for n, entry in enumerate(data["entries"]):
        outs = np.asarray(entry.get("out_channels", []), dtype=np.int64)
        ins = np.asarray(entry.get("in_channels", []), dtype=np.int64)
        lat = np.asarray(entry.get("latency_s", []), dtype=np.float64)
        if lat.shape != (len(outs), len(ins)) or lat.size == 0:
            raise ValueError(
                f"latency table entry {n}: latency_s has shape {lat.shape}, expected "
                f"({len(outs)}, {len(ins)}) from out_channels x in_channels"
            )
        if np.any(np.diff(outs) <= 0) or np.any(np.diff(ins) <= 0) or np.any(lat < 0):
            raise ValueError(
                f"latency table entry {n}: channel counts must increase and latencies be >= 0"
            )
        grids[_entry_key(entry)] = Grid(outs, ins, lat)
    overhead = float(data.get("run_overhead_s", 0.0))
    if overhead < 0:
        raise ValueError("latency table run_overhead_s must be >= 0")
    step = int(data.get("channel_step", 0))
    return LatencyTable(str(data.get("device", "")), grids, overhead, max(step, 0))


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> LatencyTable:
    with open(path, encoding="utf-8") as fh:
        return parse_latency_table(json.load(fh))


def load_latency_table(path: str | Path) -> LatencyTable:
    """Read a table from JSON (cached until the file changes)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"latency table {str(p)!r} does not exist")
    return _load(str(p.resolve()), p.stat().st_mtime_ns)
