"""Check the systolic presets against SCALE-Sim v3, the simulator they stand for.

Two halves:

- ``--simulate`` (run under ``.venv-scalesim/bin/python``: scalesim needs numpy < 2)
  simulates every layer of ``LAYERS`` on 32x32 and 128x128 arrays, weight- and
  output-stationary, dense and (weight stationary) with SCALE-Sim's n:m sparse mode, and
  writes the reference cycles to ``bench/results/scalesim_reference.json`` (committed).
- without it (the project's venv) it reads that reference, scores the same layers with
  ``hwmodels.systolic``, prints the per-layer table, checks the goals (weight stationary
  within 2% mean per-layer error, output stationary within 15%, n:m within 10%) and
  writes ``bench/results/validate_scalesim.json``. When the reference is missing (or
  with ``--resimulate``) it first runs the simulation half in ``.venv-scalesim``
  (``make .venv-scalesim`` creates it).
- ``--report`` prints the table of ``bench/results/validate_scalesim.json`` and runs nothing.

The reference cycles are SCALE-Sim's compute cycles with buffers and bandwidth large
enough that no stall occurs (recorded per layer: ``stall_cycles`` is 0): the model's
``cycles`` is the array's compute time, memory limits are a separate term of its latency.

SCALE-Sim's conv mode is used for convolutions (IFMAP given padded, since SCALE-Sim
convolves without padding, and cut to the rows the output reads) and its GEMM mode for
linear layers. A depthwise layer is one 1-filter GEMM per channel run one after the
other (SCALE-Sim's "DP" layers); its channels are identical, so one channel is simulated
and multiplied by the channel count.
SCALE-Sim's n:m mode (``SparsitySupport``, not the optimised mapping) keeps the first n
of every m weights of K; the model is given that very mask.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent

REFERENCE = _HERE / "results" / "scalesim_reference.json"
RESULTS = _HERE / "results" / "validate_scalesim.json"
SCALESIM_PY = ROOT / ".venv-scalesim" / "bin" / "python"

ARRAYS: tuple[int, ...] = (32, 128)
DATAFLOWS: tuple[str, ...] = ("ws", "os")
NM_RATIOS: tuple[tuple[int, int], ...] = ((2, 4), (1, 4))
GOALS: dict[str, float] = {"ws": 0.02, "os": 0.15, "nm": 0.10}

# name, kind, cin, cout, kernel, stride, padding, groups, in_hw (square)
LAYERS: tuple[tuple, ...] = (
    ("vgg-conv1", "conv", 3, 64, 3, 1, 1, 1, 32),
    ("vgg-conv3", "conv", 128, 256, 3, 1, 1, 1, 16),
    ("vgg-conv5", "conv", 512, 512, 3, 1, 1, 1, 4),
    ("resnet-3x3", "conv", 64, 64, 3, 1, 1, 1, 16),
    ("resnet-3x3-s2", "conv", 128, 256, 3, 2, 1, 1, 16),
    ("resnet-1x1-down-s2", "conv", 64, 128, 1, 2, 0, 1, 32),
    ("resnet-1x1-reduce", "conv", 256, 64, 1, 1, 0, 1, 14),
    ("resnet-1x1-expand", "conv", 64, 256, 1, 1, 0, 1, 14),
    ("mbv2-1x1-960", "conv", 960, 160, 1, 1, 0, 1, 7),
    ("depthwise-3x3", "depthwise", 32, 32, 3, 1, 1, 32, 16),
    ("depthwise-3x3-s2", "depthwise", 96, 96, 3, 2, 1, 96, 14),
    ("odd-3x3-37-75", "conv", 37, 75, 3, 1, 1, 1, 15),
    ("odd-1x1-100-200", "conv", 100, 200, 1, 1, 0, 1, 9),
    ("odd-5x5-3-6", "conv", 3, 6, 5, 1, 0, 1, 28),
    ("fashion-3x3-32-64", "conv", 32, 64, 3, 1, 1, 1, 14),
    ("linear-512-10", "linear", 512, 10, 1, 1, 0, 1, 1),
    ("linear-784-300", "linear", 784, 300, 1, 1, 0, 1, 1),
    ("linear-300-100", "linear", 300, 100, 1, 1, 0, 1, 1),
    ("linear-1024-1000", "linear", 1024, 1000, 1, 1, 0, 1, 1),
)


def layer_dims(row: tuple) -> dict:
    """GEMM view of one ``LAYERS`` row: per-group M, K, N, group count and output size."""
    name, kind, cin, cout, k, s, pad, groups, hw = row
    out = (hw + 2 * pad - k) // s + 1
    return {
        "name": name,
        "kind": kind,
        "in_channels": cin,
        "out_channels": cout,
        "kernel": k,
        "stride": s,
        "padding": pad,
        "groups": groups,
        "in_hw": hw,
        "out_hw": out,
        "M": out * out,
        "K": cin // groups * k * k,
        "N": cout // groups,
    }


# ---------------------------------------------------------------- simulation half
_CONFIG = """[general]
run_name = {run}

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 1048576
FilterSramSzkB = 1048576
OfmapSramSzkB = 1048576
IfmapOffset = 0
FilterOffset = 100000000
OfmapOffset = 200000000
Dataflow = {df}
ReadRequestBuffer = 1024
WriteRequestBuffer = 1024
Bandwidth = 100000

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 100000
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 100000
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = {sparse}
SparseRep = ellpack_block
OptimizedMapping = False
BlockSize = 4
RandomNumberGeneratorSeed = 40
"""


def _simulate_one(dims: dict, side: int, df: str, nm: tuple[int, int] | None, tmp: Path) -> dict:
    """SCALE-Sim compute report of one layer (one group of it)."""
    from scalesim.scale_sim import scalesim  # only in .venv-scalesim

    run = f"{dims['name']}-{side}-{df}-{nm[0]}of{nm[1]}" if nm else f"{dims['name']}-{side}-{df}"
    cfg = tmp / f"{run}.cfg"
    cfg.write_text(
        _CONFIG.format(run=run, rows=side, cols=side, df=df, sparse="true" if nm else "false")
    )
    ratio = f"{nm[0]}:{nm[1]}" if nm else "1:1"
    topo = tmp / f"{run}.csv"
    layout = tmp / f"{run}-layout.csv"
    gemm = dims["kind"] == "linear"
    if gemm:
        topo.write_text(f"Layer,M,N,K,\nL0,{dims['M']},{dims['N']},{dims['K']},{ratio},\n")
    else:
        # The input rows the convolution reads: SCALE-Sim rounds a partial last stride up
        # (ofmap = ceil((H - k) / s) + 1) where PyTorch drops it, so give it exactly
        # the padded rows PyTorch's output reads.
        hw = (dims["out_hw"] - 1) * dims["stride"] + dims["kernel"]
        cin = dims["in_channels"] // dims["groups"]
        topo.write_text(
            "Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,"
            "Num Filter,Strides,Sparsity,\n"
            f"L0,{hw},{hw},{dims['kernel']},{dims['kernel']},{cin},{dims['N']},"
            f"{dims['stride']},{ratio},\n"
        )
    layout.write_text("Layer name,\nL0," + ",".join(["1"] * 20) + ",\n")
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(cfg),
        topology=str(topo),
        layout=str(layout),
        input_type_gemm=gemm,
    )
    sim.run_scale(top_path=str(tmp))
    items = sim.runner.single_layer_sim_object_list[0].get_compute_report_items()
    overall, compute, stall = (int(v) for v in items[:3])
    return {"overall_cycles": overall, "compute_cycles": compute, "stall_cycles": stall}


def simulate(out: Path = REFERENCE, only: tuple[str, ...] = ()) -> dict:
    """Run SCALE-Sim on every case and write the reference JSON (needs scalesim).

    With ``only`` (layer names), simulate those layers and keep the stored cases of the
    others.
    """
    import numpy as np
    import scalesim

    cases = []
    if only and out.exists():
        old = json.loads(out.read_text(encoding="utf-8"))["cases"]
        cases = [c for c in old if c["layer"] not in only]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for row in LAYERS:
            if only and row[0] not in only:
                continue
            dims = layer_dims(row)
            settings = [(side, df, None) for side in ARRAYS for df in DATAFLOWS]
            if dims["K"] >= 16:  # n:m needs whole blocks of K
                settings += [(side, "ws", nm) for side in ARRAYS for nm in NM_RATIOS]
            for side, df, nm in settings:
                t0 = time.perf_counter()
                rep = _simulate_one(dims, side, df, nm, tmp)
                per_group = rep["compute_cycles"]
                cases.append(
                    {
                        "layer": dims["name"],
                        "array": side,
                        "dataflow": df,
                        "nm": f"{nm[0]}:{nm[1]}" if nm else "off",
                        "cycles": per_group * dims["groups"],
                        "cycles_per_group": per_group,
                        "stall_cycles": rep["stall_cycles"] * dims["groups"],
                        "sim_s": round(time.perf_counter() - t0, 2),
                    }
                )
                print(
                    f"{dims['name']:<20} {side:>4} {df} {cases[-1]['nm']:>4} "
                    f"{cases[-1]['cycles']:>10} ({cases[-1]['sim_s']:.1f} s)",
                    flush=True,
                )
    order = {row[0]: i for i, row in enumerate(LAYERS)}
    cases.sort(key=lambda c: order[c["layer"]])
    ref = {
        "simulator": "SCALE-Sim v3 (PyPI scalesim "
        + getattr(scalesim, "__version__", _dist_version("scalesim"))
        + ")",
        "numpy": np.__version__,
        "note": "compute cycles with no memory stall; depthwise = channels x one channel",
        "layers": [layer_dims(row) for row in LAYERS],
        "cases": cases,
        "simulate_s": round(time.perf_counter() - start, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref, indent=1), encoding="utf-8")
    print(f"wrote {out}")
    return ref


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def ensure_scalesim_venv() -> Path:
    """Create ``.venv-scalesim`` (scalesim with numpy < 2) if it is missing."""
    if not SCALESIM_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SCALESIM_PY.parent.parent)], check=True)
        subprocess.run(
            [str(SCALESIM_PY), "-m", "pip", "install", "-q", "numpy<2", "scalesim"], check=True
        )
    return SCALESIM_PY


# ---------------------------------------------------------------- comparison half
def model_cycles(case: dict, dims: dict) -> float:
    """Cycles the systolic model gives one reference case."""
    import numpy as np

    from hwmodels import LayerSpec, get_hardware

    k = dims["kernel"]
    layer = LayerSpec(
        name=dims["name"],
        kind=dims["kind"],
        in_channels=dims["in_channels"],
        out_channels=dims["out_channels"],
        kernel=(k, k),
        stride=(dims["stride"],) * 2,
        padding=(dims["padding"],) * 2,
        groups=dims["groups"],
        in_hw=(dims["in_hw"],) * 2,
        out_hw=(dims["out_hw"],) * 2,
    )
    hw = get_hardware(
        f"systolic-{case['array']}", dataflow=case["dataflow"], nm_sparsity=case["nm"]
    )
    mask = None
    if case["nm"] != "off":
        n, m = (int(v) for v in case["nm"].split(":"))
        keep = (np.arange(layer.fan_in) % m) < n  # SCALE-Sim's pattern: first n of every m
        mask = np.broadcast_to(keep, (layer.out_channels, layer.fan_in)).reshape(layer.weight_shape)
    return hw.cost(layer, mask).cycles


def compare(ref: dict) -> dict:
    """Per-case model vs SCALE-Sim cycles, per-group error summaries and goal checks."""
    dims = {d["name"]: d for d in ref["layers"]}
    rows = []
    for case in ref["cases"]:
        model = model_cycles(case, dims[case["layer"]])
        err = model / case["cycles"] - 1.0
        group = "nm" if case["nm"] != "off" else case["dataflow"]
        rows.append({**case, "model_cycles": model, "rel_error": err, "group": group})
    summary = {}
    for group, goal in GOALS.items():
        errs = [abs(r["rel_error"]) for r in rows if r["group"] == group]
        summary[group] = {
            "cases": len(errs),
            "mean_abs_error": sum(errs) / len(errs),
            "max_abs_error": max(errs),
            "goal_mean": goal,
            "met": sum(errs) / len(errs) <= goal,
        }
    return {"rows": rows, "summary": summary}


def print_table(result: dict) -> None:
    """The per-layer table and the summary."""
    print(f"{'layer':<20}{'array':>6}{'df':>4}{'n:m':>5}{'scalesim':>11}{'model':>11}{'error':>9}")
    for r in result["rows"]:
        print(
            f"{r['layer']:<20}{r['array']:>6}{r['dataflow']:>4}{r['nm']:>5}{r['cycles']:>11}"
            f"{r['model_cycles']:>11.0f}{100 * r['rel_error']:>8.2f}%"
        )
    for group, s in result["summary"].items():
        print(
            f"{group:>3}: {s['cases']} cases, mean |error| {100 * s['mean_abs_error']:.2f}% "
            f"(goal {100 * s['goal_mean']:.0f}%), max {100 * s['max_abs_error']:.2f}%"
            f" -> {'met' if s['met'] else 'NOT met'}"
        )


def main(argv: list[str] | None = None) -> dict:
    """Entry point: simulate (``--simulate``) or compare against the stored reference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--simulate", action="store_true", help="run SCALE-Sim (its venv)")
    parser.add_argument("--resimulate", action="store_true", help="redo the reference first")
    parser.add_argument("--only", nargs="*", default=[], help="layers to (re)simulate")
    parser.add_argument("--report", action="store_true", help="print the stored table, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(RESULTS.read_text(encoding="utf-8"))
        print_table(result)
        return result
    if args.simulate:
        return simulate(only=tuple(args.only))
    if args.resimulate or not REFERENCE.exists():
        py = ensure_scalesim_venv()
        env = {**os.environ, "PYTHONPATH": ""}
        subprocess.run([str(py), str(Path(__file__).resolve()), "--simulate"], check=True, env=env)
    ref = json.loads(REFERENCE.read_text(encoding="utf-8"))
    result = compare(ref)
    print_table(result)
    RESULTS.write_text(
        json.dumps(
            {"reference": ref["simulator"], "machine": platform.platform(), **result}, indent=1
        ),
        encoding="utf-8",
    )
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
