"""``hwprune profile-gpu``: measure conv latency over channel counts into a lookup table.

The table (format in ``hwmodels.latency_table``) calibrates a GPU cost model:
``get_hardware("gpu-jetson-tx2", latency_table="table.json")``. Real convolutions are
timed with torch on the chosen device (CUDA where present, else CPU); each point is the
median of ``repeats`` runs after ``warmup`` runs.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # torch is imported where it runs: `hwprune --help` must stay fast
    import torch


@dataclass(frozen=True)
class ProfileShape:
    """One representative conv shape; channel counts vary up to the given maxima."""

    in_channels: int
    out_channels: int
    kernel: int
    in_hw: int
    stride: int = 1

    @property
    def padding(self) -> int:
        """'Same' padding of the kernel."""
        return self.kernel // 2


#: Largest batch timed (``--batch``). A latency table describes inference batches; 4,096
#: inputs of the largest default shape (64 x 56 x 56 float32, 0.8 MB each) are already
#: 3.3 GB of input before the convolution's output.
MAX_PROFILE_BATCH = 4096

# ResNet-style layers at 224x224 input: early 3x3, middle 3x3, late 1x1.
DEFAULT_SHAPES: tuple[ProfileShape, ...] = (
    ProfileShape(64, 64, 3, 56),
    ProfileShape(128, 128, 3, 28),
    ProfileShape(256, 256, 1, 14),
)


def channel_counts(full: int, step: int) -> list[int]:
    """Counts from ``step`` to ``full`` in ``step``s, plus full-4 (a misaligned count)."""
    counts = set(range(step, full + 1, step)) | {full}
    if full - 4 > 0:
        counts.add(full - 4)
    return sorted(counts)


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA if available else CPU; otherwise ``torch.device(device)``."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def time_conv(
    x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, *, repeats: int, warmup: int
) -> float:
    """Median seconds of one ``conv2d(x, w)`` on ``x``'s device."""
    import torch
    from torch.nn import functional as F

    cuda = x.device.type == "cuda"
    times = []
    with torch.no_grad():
        for _ in range(warmup):
            F.conv2d(x, w, stride=stride, padding=padding)
        if cuda:
            torch.cuda.synchronize(x.device)
        for _ in range(repeats):
            start = time.perf_counter()
            F.conv2d(x, w, stride=stride, padding=padding)
            if cuda:
                torch.cuda.synchronize(x.device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile_gpu(
    out: Path,
    device: str = "auto",
    *,
    shapes: tuple[ProfileShape, ...] = DEFAULT_SHAPES,
    channel_step: int = 16,
    in_channel_points: int = 3,
    batch: int = 1,
    dtype: str = "float32",
    repeats: int = 10,
    warmup: int = 3,
) -> dict[str, Any]:
    """Time convolutions over channel counts and write the latency table JSON to ``out``.

    For each shape, output channels take ``channel_counts(out_channels, channel_step)``
    and input channels ``in_channel_points`` evenly spaced counts up to the maximum.
    Returns the table written.
    """
    from agents.checks import check_count, check_output_file

    check_count("batch", batch, minimum=1, maximum=MAX_PROFILE_BATCH)
    if channel_step < 1 or repeats < 1 or in_channel_points < 1 or warmup < 0:
        raise ValueError("channel_step, repeats and in_channel_points must be >= 1, warmup >= 0")
    check_output_file(out, "--out")  # before minutes of timing

    import torch

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"unknown dtype {dtype!r}; valid: float32, float16, bfloat16")
    dev = resolve_device(device)
    tdtype = getattr(torch, dtype)
    if dev.type == "cpu" and tdtype == torch.float16:
        raise ValueError("float16 convolutions are not timed on CPU; use float32 or bfloat16")
    gen = torch.Generator().manual_seed(0)
    entries = []
    for shape in shapes:
        outs = channel_counts(shape.out_channels, channel_step)
        n_in = min(in_channel_points, shape.in_channels)
        ins = sorted({max(1, round(shape.in_channels * (i + 1) / n_in)) for i in range(n_in)})
        grid = []
        for cout in outs:
            row = []
            for cin in ins:
                x = torch.randn(batch, cin, shape.in_hw, shape.in_hw, generator=gen)
                w = torch.randn(cout, cin, shape.kernel, shape.kernel, generator=gen)
                x, w = x.to(dev, tdtype), w.to(dev, tdtype)
                row.append(
                    time_conv(x, w, shape.stride, shape.padding, repeats=repeats, warmup=warmup)
                )
            grid.append(row)
        out_hw = (shape.in_hw + 2 * shape.padding - shape.kernel) // shape.stride + 1
        entries.append(
            {
                "kind": "conv",
                "kernel": [shape.kernel, shape.kernel],
                "stride": [shape.stride, shape.stride],
                "padding": [shape.padding, shape.padding],
                "groups": 1,
                "in_hw": [shape.in_hw, shape.in_hw],
                "out_hw": [out_hw, out_hw],
                "batch": batch,
                "out_channels": outs,
                "in_channels": ins,
                "latency_s": grid,
                "profiled_shape": asdict(shape),
            }
        )
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    table = {
        "device": f"{dev} {name}",
        "dtype": dtype,
        "torch": torch.__version__,
        "repeats": repeats,
        "entries": entries,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1), encoding="utf-8")
    return table


def profile_gpu_command(
    out: Path = typer.Option(Path("gpu_latency_table.json"), help="Where to write the table."),
    device: str = typer.Option("auto", help="auto (CUDA if present), cpu, cuda, cuda:1..."),
    channel_step: int = typer.Option(16, help="Output-channel step between measurements."),
    in_channel_points: int = typer.Option(3, help="Input-channel counts per shape."),
    batch: int = typer.Option(1, help="Batch size of the timed convolutions."),
    dtype: str = typer.Option("float32", help="float32, float16 (CUDA) or bfloat16."),
    repeats: int = typer.Option(10, help="Timed runs per point (median)."),
    warmup: int = typer.Option(3, help="Untimed runs before each point."),
) -> None:
    """Time real convolutions over channel counts and write a GPU latency lookup table."""
    try:
        table = profile_gpu(
            out,
            device,
            channel_step=channel_step,
            in_channel_points=in_channel_points,
            batch=batch,
            dtype=dtype,
            repeats=repeats,
            warmup=warmup,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    points = sum(len(e["out_channels"]) * len(e["in_channels"]) for e in table["entries"])
    typer.echo(f"wrote {points} measurements on {table['device']} to {out}")
    typer.echo(f'use it: get_hardware("gpu-jetson-tx2", latency_table="{out}")')
