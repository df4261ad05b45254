"""``hwprune profile-cpu``: time a workload's real layers on this CPU into a latency table.

The table (format in ``hwmodels.latency_table``) is what the ``cpu`` hardware model reads:
``get_hardware("cpu", latency_table="table.json")``. Every prunable layer of the
workload (shapes from a real forward pass, ``pruning.inspect_model``) is timed alone,
with a bias and (convolutions) a ReLU as deployed, over a grid of output and input
channel counts: the multiples of ``channel_step`` up to the layer's own counts, plus
the counts themselves. Layers of one shape share one grid.

Engines: ``onnxruntime`` (a one-node ONNX graph per point, the runtime the exported
``model.onnx`` runs on) or ``torch`` (``F.conv2d`` / ``F.linear``). Each point is the
best of ``repeats`` rounds, each round long enough (at least ``min_round_s``) to time;
the best round is the least disturbed by other work on a shared machine. For
onnxruntime, the cost of one empty ``session.run`` (measured apart) is subtracted from
every point and stored as ``run_overhead_s``: a network pays it once, not per layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from agents.app.commands.errors import fail

ENGINES: tuple[str, ...] = ("onnxruntime", "torch")


def vector_channels() -> int:
    """fp32 lanes of this CPU's widest vectors: 16 with AVX-512, else 8 (AVX2, NEON x2)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8
    return 16 if " avx512f" in flags else 8


def channel_grid(full: int, step: int) -> list[int]:
    """Multiples of ``step`` up to ``full``, and ``full`` itself."""
    return sorted(set(range(step, full + 1, step)) | {full})


def best_time(fn: Callable[[], Any], *, repeats: int, warmup: int, min_round_s: float) -> float:
    """Seconds of one ``fn()`` call: the best of ``repeats`` rounds of several calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(min_round_s / once))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ort_session(graph: Any, threads: int) -> Any:
    import onnx
    import onnxruntime as ort

    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ort_layer(layer: Any, cout: int, cin: int, batch: int, threads: int) -> Callable[[], Any]:
    """A callable running one layer with ``cout``/``cin`` channels in onnxruntime."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    g = layer.groups
    if layer.kind == "linear":
        x = rng.standard_normal((batch, cin), dtype=np.float32)
        w = rng.standard_normal((cout, cin), dtype=np.float32)
        nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)]
    else:
        x = rng.standard_normal((batch, cin, *layer.in_hw), dtype=np.float32)
        w = rng.standard_normal((cout, cin // g, *layer.kernel), dtype=np.float32)
        pads = [layer.padding[0], layer.padding[1], layer.padding[0], layer.padding[1]]
        nodes = [
            helper.make_node(
                "Conv",
                ["x", "w", "b"],
                ["c"],
                strides=list(layer.stride),
                pads=pads,
                group=g,
                kernel_shape=list(layer.kernel),
            ),
            helper.make_node("Relu", ["c"], ["y"]),
        ]
    b = rng.standard_normal(cout, dtype=np.float32)
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    sess = _ort_session(graph, threads)
    feeds = {"x": x}
    return lambda: sess.run(None, feeds)


def ort_run_overhead(threads: int, *, repeats: int, warmup: int, min_round_s: float) -> float:
    """Seconds of one ``session.run`` of an Identity graph on one float."""
    import numpy as np
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    sess = _ort_session(graph, threads)
    feeds = {"x": np.zeros(1, dtype=np.float32)}
    return best_time(
        lambda: sess.run(None, feeds), repeats=repeats, warmup=warmup, min_round_s=min_round_s
    )


def _torch_layer(layer: Any, cout: int, cin: int, batch: int, threads: int) -> Callable[[], Any]:
    """A callable running one layer with ``cout``/``cin`` channels in torch."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    g = layer.groups
    b = torch.randn(cout, generator=gen)
    if layer.kind == "linear":
        x = torch.randn(batch, cin, generator=gen)
        w = torch.randn(cout, cin, generator=gen)

        def run() -> Any:
            with torch.no_grad():
                return F.linear(x, w, b)

        return run
    x = torch.randn(batch, cin, *layer.in_hw, generator=gen)
    w = torch.randn(cout, cin // g, *layer.kernel, generator=gen)

    def run_conv() -> Any:
        with torch.no_grad():
            return F.conv2d(x, w, b, layer.stride, layer.padding, 1, g).relu_()

    return run_conv


def profile_cpu(
    out: Path,
    models: Sequence[str] = ("fashion-cnn",),
    *,
    engine: str = "onnxruntime",
    batches: Sequence[int] = (1,),
    channel_step: int = 0,
    threads: int = 1,
    repeats: int = 7,
    warmup: int = 3,
    min_round_s: float = 2e-3,
    data: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time the layers of ``models`` over channel grids and write the table JSON to ``out``.

    ``channel_step`` 0 takes the CPU's vector width in fp32 lanes (``vector_channels``).
    Returns the table written. ``ValueError`` for bad arguments, ``KeyError`` for an
    unknown model, before anything is timed.
    """
    from envs import get_workload
    from hwmodels.latency_table import parse_latency_table, shape_key
    from pruning import inspect_model

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if not models:
        raise ValueError("give at least one --model")
    if not batches or any(b < 1 for b in batches):
        raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
    if channel_step < 0 or repeats < 1 or warmup < 0 or threads < 1 or min_round_s <= 0:
        raise ValueError(
            "repeats and threads must be >= 1, channel_step and warmup >= 0, min_round_s > 0"
        )
    from agents.app.commands.profile_gpu import MAX_PROFILE_BATCH
    from agents.checks import check_count, check_output_file, check_threads

    for b in batches:
        check_count("batch", b, minimum=1, maximum=MAX_PROFILE_BATCH)
    check_threads("threads", threads)
    check_output_file(out, "--out")  # before minutes of timing
    channel_step = channel_step or vector_channels()
    if engine == "onnxruntime":
        from agents.extras import require_extra

        require_extra("onnx", "profile-cpu --engine onnxruntime", hint="pass --engine torch")
    shapes: dict[tuple, dict[str, Any]] = {}
    for name in models:
        with warnings.catch_warnings():  # random weights time like trained ones
            warnings.filterwarnings("ignore", message=".*RANDOM weights.*")
            workload = get_workload(name, data=data, train=False)
        for layer in inspect_model(workload.model, workload.example_input):
            g = layer.groups
            entry = shapes.setdefault(
                shape_key(layer), {"layer": layer, "outs": set(), "ins": set(), "names": []}
            )
            entry["outs"].update(c * g for c in channel_grid(layer.out_channels // g, channel_step))
            entry["ins"].update(c * g for c in channel_grid(layer.in_channels // g, channel_step))
            entry["names"].append(f"{name}:{layer.name}")
    make = _ort_layer if engine == "onnxruntime" else _torch_layer
    timing = {"repeats": repeats, "warmup": warmup, "min_round_s": min_round_s}
    overhead = ort_run_overhead(threads, **timing) if engine == "onnxruntime" else 0.0
    entries = []
    start = time.perf_counter()
    for batch in batches:
        for entry in shapes.values():
            layer = dataclasses.replace(entry["layer"], batch=batch)
            outs, ins = sorted(entry["outs"]), sorted(entry["ins"])
            grid = [
                [
                    max(best_time(make(layer, o, i, batch, threads), **timing) - overhead, 0.0)
                    for i in ins
                ]
                for o in outs
            ]
            if progress is not None:
                progress(f"batch {batch} {', '.join(entry['names'])}: {len(outs)}x{len(ins)}")
            entries.append(
                {
                    "kind": layer.kind,
                    "kernel": list(layer.kernel),
                    "stride": list(layer.stride),
                    "padding": list(layer.padding),
                    "groups": layer.groups,
                    "in_hw": list(layer.in_hw),
                    "out_hw": list(layer.out_hw),
                    "batch": batch,
                    "out_channels": outs,
                    "in_channels": ins,
                    "latency_s": grid,
                    "layers": entry["names"],
                }
            )
    if engine == "onnxruntime":
        import onnxruntime as ort

        version = f"onnxruntime {ort.__version__}"
    else:
        import torch

        version = f"torch {torch.__version__}"
    table = {
        "device": f"cpu {cpu_name()} ({os.cpu_count()} logical cores)",
        "engine": version,
        "threads": threads,
        "channel_step": channel_step,
        "dtype": "float32",
        "statistic": "best of repeats rounds",
        **timing,
        "run_overhead_s": overhead,
        "profile_s": round(time.perf_counter() - start, 1),
        "entries": entries,
    }
    parse_latency_table(table)  # what is written must load
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1), encoding="utf-8")
    return table


def profile_cpu_command(
    out: Path = typer.Option(Path("cpu_latency_table.json"), help="Where to write the table."),
    model: list[str] = typer.Option(["fashion-cnn"], help="Workload(s) whose layers to time."),
    engine: str = typer.Option("onnxruntime", help="onnxruntime or torch."),
    batch: list[int] = typer.Option([1], help="Batch size(s) to time."),
    channel_step: int = typer.Option(
        0, help="Channel step of the grid and pruning multiple (0: the CPU's vector width)."
    ),
    threads: int = typer.Option(1, help="Threads of the timed runtime."),
    repeats: int = typer.Option(7, help="Timed rounds per point (the best is kept)."),
    warmup: int = typer.Option(3, help="Untimed runs before each point."),
    data: str = typer.Option(None, help="Data of the workload (its default when omitted)."),
) -> None:
    """Time a workload's real layers on this CPU and write a latency table for ``cpu``."""
    try:
        table = profile_cpu(
            out,
            tuple(model),
            engine=engine,
            batches=tuple(batch),
            channel_step=channel_step,
            threads=threads,
            repeats=repeats,
            warmup=warmup,
            data=data,
            progress=typer.echo,
        )
    except (ValueError, KeyError, FileNotFoundError, ImportError) as exc:
        fail(exc)
    points = sum(len(e["out_channels"]) * len(e["in_channels"]) for e in table["entries"])
    typer.echo(f"wrote {points} measurements on {table['device']} to {out}")
    typer.echo(f'use it: --hardware cpu --hw-param latency_table="{out}"')
