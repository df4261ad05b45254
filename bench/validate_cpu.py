"""The ``cpu`` target checked on the machine itself: predicted vs measured network latency.

For channel-pruning policies of fashion-cnn (trained weights from the cache), the whole
chain runs as a user would: the ``channel`` scheme's masks (channel multiple from the
``cpu`` model: 16 with the shipped table), ``pruning.export.export_pruned`` writing ``compact/`` and
``model.onnx``, and ONNX Runtime timing that ``model.onnx`` (one thread, best of rounds,
as ``hwprune profile-cpu`` times layers). The prediction is ``network_cost(...).latency_s``
of the ``cpu`` model reading the measured table (``hwmodels/tables/cpu.json``, written
by ``profile-cpu``; ``--profile`` re-measures it first).

Reported per batch size: Spearman rank correlation of predicted and measured latency
over the policies (goal >= 0.9), mean absolute relative error, and the measured and
predicted speed-up of the fastest policy over dense. Writes
``bench/results/validate_cpu.json``; ``--report`` prints its summary and runs nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = _HERE / "results" / "validate_cpu.json"
WORKLOAD = "fashion-cnn"


def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session of the model at ``path`` (all graph optimisations)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_latency(sess, x: np.ndarray, *, repeats: int) -> float:
    """Best-of-rounds seconds of one ``session.run`` on ``x``."""
    from agents.app.commands.profile_cpu import best_time

    feeds = {sess.get_inputs()[0].name: x}
    return best_time(lambda: sess.run(None, feeds), repeats=repeats, warmup=5, min_round_s=5e-3)


def policies(task, count: int, seed: int) -> list[list[int]]:
    """Dense, every uniform level, then random level choices (distinct)."""
    rng = np.random.default_rng(seed)
    n_levels = [len(d.levels) for d in task.decisions]
    out = [[n - 1 for n in n_levels]]
    for frac in (0.75, 0.5, 0.25, 0.0):
        out.append([int(round(frac * (n - 1))) for n in n_levels])
    seen = {tuple(p) for p in out}
    while len(out) < count:
        choice = [int(rng.integers(0, n)) for n in n_levels]
        if tuple(choice) not in seen:
            seen.add(tuple(choice))
            out.append(choice)
    return out


def export_onnx(task, choice: list[int], out: Path) -> dict:
    """Export the policy's compact model and ONNX with ``export_pruned``; its manifest."""
    from pruning.apply import apply_masks, make_permanent
    from pruning.export import export_pruned

    model = copy.deepcopy(task.workload.model)
    masks = task.masks(choice)
    make_permanent(apply_masks(model, masks))
    export_pruned(
        model,
        task.workload.example_input,
        out,
        scheme=task.scheme,
        layers=task.layers,
        manifest={"densities": task.densities(choice)},
        formats=("compact", "onnx"),
        overwrite=True,
    )
    return json.loads((out / "manifest.json").read_text())


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (scipy)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def summary_table(summary: dict) -> str:
    """Per batch size: rank correlation, mean error, the fastest policy's speed-ups."""
    lines = [
        f"{'batch':>6}{'spearman':>10}{'mean |err|':>12}{'best kept':>11}{'meas x':>8}{'pred x':>8}"
    ]
    for b, s in summary.items():
        lines.append(
            f"{b:>6}{s['spearman']:>10.3f}{100 * s['mean_abs_rel_error']:>11.1f}%"
            f"{s['best_weights_kept']:>11.2f}{s['best_measured_speedup']:>8.2f}"
            f"{s['best_predicted_speedup']:>8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the validation, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=24)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="re-measure the table first")
    parser.add_argument("--report", action="store_true", help="print the stored table, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        result = json.loads(RESULTS.read_text(encoding="utf-8"))
        print(
            f"{len(result['policies'])} policies of {result['workload']}, {result['scheme']}, "
            f"table: {result['table_device']}, {result['table_engine']}"
        )
        print(summary_table(result["summary"]))
        return result
    torch.set_num_threads(1)

    from envs import get_workload
    from envs.task import build_task
    from hwmodels import get_hardware
    from hwmodels.cpu import DEFAULT_TABLE
    from pruning import get_scheme

    if args.profile:
        from agents.app.commands.profile_cpu import profile_cpu

        profile_cpu(
            Path(DEFAULT_TABLE or ROOT / "hwmodels" / "tables" / "cpu.json"),
            (WORKLOAD, "digits-cnn"),
            batches=tuple(args.batches),
            threads=args.threads,
            progress=print,
        )
    workload = get_workload(WORKLOAD)
    hw = get_hardware("cpu")
    scheme = get_scheme("channel", hardware=hw)
    task = build_task(workload, scheme, hw, metric="latency")
    chosen = policies(task, args.policies, args.seed)
    table = json.loads(Path(hw.params.latency_table).read_text())
    print(f"{len(chosen)} policies of {WORKLOAD}, channel multiple {hw.structure()}")
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = []
        for k, choice in enumerate(chosen):
            out = Path(tmp) / f"p{k}"
            manifest = export_onnx(task, choice, out)
            sessions.append(ort_session(out / "model.onnx", args.threads))
            row = {
                "policy": k,
                "choice": choice,
                "densities": task.densities(choice),
                "weights_kept": task.overall_density(choice),
                "compact_params": manifest["parameters"]["compact_total"],
            }
            masks = task.masks(choice)
            arrays = [
                None if (m := masks.get(f"{layer.name}.weight")) is None else m.numpy()
                for layer in task.layers
            ]
            for batch in args.batches:
                predicted = hw.with_params(batch=batch).network_cost(task.layers, arrays)
                row[f"b{batch}"] = {"predicted_s": predicted.latency_s, "measured_s": []}
            rows.append(row)
        # Interleaved passes over all policies; each keeps its best pass, so that a burst
        # of other work on the shared machine does not land on one policy only.
        for batch in args.batches:
            shape = (batch, *task.workload.example_input.shape[1:])
            x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            for _ in range(args.passes):
                for row, sess in zip(rows, sessions, strict=True):
                    t = ort_latency(sess, x, repeats=args.repeats)
                    row[f"b{batch}"]["measured_s"].append(t)
        for row in rows:
            for batch in args.batches:
                cell = row[f"b{batch}"]
                cell["passes_s"] = cell.pop("measured_s")
                cell["measured_s"] = min(cell["passes_s"])
            print(
                f"policy {row['policy']:>2}: kept {row['weights_kept']:.2f} "
                + " ".join(
                    f"b{b}: pred {1e6 * row[f'b{b}']['predicted_s']:8.1f} us "
                    f"meas {1e6 * row[f'b{b}']['measured_s']:8.1f} us"
                    for b in args.batches
                ),
                flush=True,
            )
    summary = {}
    for batch in args.batches:
        pred = [r[f"b{batch}"]["predicted_s"] for r in rows]
        meas = [r[f"b{batch}"]["measured_s"] for r in rows]
        best = int(np.argmin(meas))
        summary[f"b{batch}"] = {
            "spearman": spearman(pred, meas),
            "mean_abs_rel_error": float(np.mean(np.abs(np.array(pred) / np.array(meas) - 1))),
            "dense_measured_s": meas[0],
            "dense_predicted_s": pred[0],
            "best_policy": best,
            "best_weights_kept": rows[best]["weights_kept"],
            "best_measured_speedup": meas[0] / meas[best],
            "best_predicted_speedup": pred[0] / pred[best],
            "goal_spearman": 0.9,
        }
    print()
    print(summary_table(summary))
    result = {
        "workload": WORKLOAD,
        "scheme": f"channel (round_to {hw.structure()['channel_multiple']})",
        "hardware": "cpu",
        "table_device": table.get("device"),
        "table_engine": table.get("engine"),
        "threads": args.threads,
        "machine": platform.platform(),
        "note": "2-core machine shared with other work: timings are best-of-rounds",
        "seconds": round(time.perf_counter() - start, 1),
        "summary": summary,
        "policies": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
