"""The seeds' headlines on real data: each method hwprune is built on, against its paper.

Measured on fashion-cnn (Fashion-MNIST, dense 93.05% test) and, with ``--model
resnet20-fashion``, on resnet20 (dense 93.13% test), every pruned network after the same
fine-tune as the search-quality benchmark's truth (300 SGD steps of batch 64, lr 0.01, masks
fixed; its dense reference gets the same fine-tune). Rows:

- **Kang** (accelerator-aware, ~2x accelerator speed over unstructured): balanced and
  unstructured pruning at the same density, every layer at 25% (the released models'
  g=16/p=12), on ``accel-kang-16``'s lock-step cycle model.
- **Liang et al.** (crossbar-aware, 44-72% fewer crossbars with little loss): uniform
  crossbar-grain policies on ``reram-128``; crossbars saved and accuracy lost.
- **IKR** (up to 10x fewer parameters and 7x fewer operations at < 1% loss): uniform IKR
  levels; kept share of the prunable weights and of the MACs (``flops`` model).
- **PCNN** (8.4x compression at 0.2% loss, ~3% of the storage on indices): uniform pattern
  levels; storage of 32-bit values plus the SPM index bits (``pruning.formats``) against the
  dense 32-bit weights of the pruned layers.
- **Radu et al.** (channel-count cliffs: removing 12% of channels slowed a layer 2x;
  performance-aware pruning up to 3x faster with cuDNN): ``gpu-jetson-tx2`` latency of each
  conv layer of the network at batch 32 as its output channels shrink, the worst slowdown
  from removing at most 12% of a layer's channels; and the speed-up of the channel x GPU
  policies the search-quality benchmark found (read from its JSON, if present).

Prints a table and writes ``bench/results/headlines.json`` (resnet20:
``headlines_resnet20.json``).

    python -m bench.headlines
    python -m bench.headlines --model resnet20-fashion
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
import torch  # noqa: E402

FINETUNE_STEPS = 300
RESULTS = ROOT / "bench" / "results"


@dataclasses.dataclass(frozen=True)
class Target:
    """A network the headlines are measured on, and where its results live."""

    label: str
    model: str
    data: str
    out: Path
    #: The search-quality results holding this network's channel x GPU searches.
    search_quality: Path


TARGETS: dict[str, Target] = {
    "fashion-cnn": Target(
        "fashion-cnn",
        "fashion-cnn",
        "fashion-mnist",
        RESULTS / "headlines.json",
        RESULTS / "search_quality.json",
    ),
    "resnet20-fashion": Target(
        "resnet20-fashion",
        "resnet20",
        "fashion-mnist",
        RESULTS / "headlines_resnet20.json",
        RESULTS / "search_quality_resnet20.json",
    ),
}


def _task(target: Target, scheme: str, hardware: str, **fields: Any):
    from envs import TaskSpec, make_task

    return make_task(
        TaskSpec(model=target.model, data=target.data, scheme=scheme, hardware=hardware, **fields)
    )


def _uniform(task, density: float) -> list[int]:
    return task.choice_for_densities({d.name: density for d in task.decisions})


def _uniform_choices(task) -> list[list[int]]:
    """The distinct uniform policies of a task, densest first (dense excluded)."""
    levels = np.unique(np.concatenate([d.levels for d in task.decisions]))[::-1]
    out: list[list[int]] = []
    for density in levels:
        choice = _uniform(task, float(density))
        if choice not in out and any(
            j < len(d.levels) - 1 for d, j in zip(task.decisions, choice, strict=True)
        ):
            out.append(choice)
    return out


#: (id(task), choice) -> (task, accuracy). The task is kept so that its id is never reused
#: by a later task (a freed task's id can be, and its choices would then hit this memo).
_ACC: dict[tuple, tuple[Any, float]] = {}


def finetuned_accuracy(task, choice: list[int]) -> float:
    """Test accuracy after the benchmark's fine-tune (memoised per task and policy)."""
    from agents.app.finalize import pruned_model, test_accuracy

    key = (id(task), tuple(choice))
    if key not in _ACC:
        model = pruned_model(task, choice, finetune_steps=FINETUNE_STEPS, seed=0)
        _ACC[key] = (task, test_accuracy(task, model))
    return _ACC[key][1]


def _dense(task) -> list[int]:
    return list(task.dense_choice)


def kang(target: Target) -> dict[str, Any]:
    """Balanced against unstructured at 25% density on the lock-step PE array."""
    bal = _task(target, "balanced", "accel-kang-16")
    uns = _task(target, "unstructured", "accel-kang-16")
    cb, cu = _uniform(bal, 0.25), _uniform(uns, 0.25)
    cycles = {
        "dense": bal.dense_cost.cycles,
        "balanced": bal.cost(cb).cycles,
        "unstructured": uns.cost(cu).cycles,
    }
    return {
        "density": {"balanced": bal.overall_density(cb), "unstructured": uns.overall_density(cu)},
        "cycles": cycles,
        "speedup_over_unstructured": cycles["unstructured"] / cycles["balanced"],
        "speedup_over_dense": {
            k: cycles["dense"] / cycles[k] for k in ("balanced", "unstructured")
        },
        "accuracy": {
            "dense": finetuned_accuracy(bal, _dense(bal)),
            "balanced": finetuned_accuracy(bal, cb),
            "unstructured": finetuned_accuracy(uns, cu),
        },
    }


def _uniform_sweep(task, extra) -> list[dict[str, Any]]:
    dense_acc = finetuned_accuracy(task, _dense(task))
    rows = []
    for choice in _uniform_choices(task):
        acc = finetuned_accuracy(task, choice)
        rows.append(
            {
                "choice": choice,
                "density": task.overall_density(choice),
                "accuracy": acc,
                "loss_points": 100 * (dense_acc - acc),
                **extra(choice),
            }
        )
    return rows


def liang(target: Target) -> dict[str, Any]:
    """Crossbar-grain uniform policies on reram-128: crossbars saved and accuracy lost."""
    task = _task(target, "crossbar", "reram-128", metric="resources")
    rows = _uniform_sweep(
        task, lambda c: {"crossbars": task.cost(c).resources, "crossbar_ratio": task.cost_ratio(c)}
    )
    return {"dense_crossbars": task.dense_cost.resources, "policies": rows}


def ikr(target: Target) -> dict[str, Any]:
    """Uniform IKR levels: parameters and MACs kept, accuracy lost."""
    from envs import build_task
    from hwmodels import get_hardware

    task = _task(target, "ikr", "accel-kang-16")
    flops = build_task(task.workload, task.scheme, get_hardware("flops"), metric="latency")
    rows = _uniform_sweep(task, lambda c: {"macs_ratio": flops.cost_ratio(c)})
    for r in rows:
        r["param_compression"] = 1 / r["density"]
        r["op_reduction"] = 1 / r["macs_ratio"]
    return {"policies": rows}


def pcnn(target: Target) -> dict[str, Any]:
    """Uniform pattern levels: storage with the SPM index against dense 32-bit weights."""
    from pruning.formats import encode

    task = _task(target, "pattern", "accel-kang-16")
    params = dict(task.workload.model.named_parameters())
    specs = {layer.name: layer for layer in task.layers}

    def storage(choice: list[int]) -> dict[str, Any]:
        values = index = dense = 0
        for key, mask in task.masks(choice).items():
            name = key.removesuffix(".weight")
            enc = encode(task.scheme, params[key].detach(), mask, specs[name])
            values += 32 * enc.value_count
            index += enc.metadata_bits
            dense += 32 * mask.numel()
        return {
            "compression": dense / (values + index),
            "index_share": index / (values + index),
        }

    return {"policies": _uniform_sweep(task, storage)}


def radu(target: Target) -> dict[str, Any]:
    """GPU latency against output channels per conv layer (batch 32), and the searched
    channel policies' speed-up."""
    from hwmodels import get_hardware

    gpu = get_hardware("gpu-jetson-tx2", batch=32)
    task = _task(target, "channel", "gpu-jetson-tx2", hardware_params={"batch": 32})
    layers = []
    for spec in task.layers:
        if spec.kind != "conv":
            continue
        lat = {
            c: gpu.cost(dataclasses.replace(spec, out_channels=c)).latency_s
            for c in range(1, spec.out_channels + 1)
        }
        worst, at = 1.0, None
        for c in lat:  # remove up to 12% of c's channels: the worst slowdown
            for c2 in range(max(1, int(np.ceil(0.88 * c))), c):
                if lat[c2] / lat[c] > worst:
                    worst, at = lat[c2] / lat[c], (c, c2)
        layers.append(
            {
                "layer": spec.name,
                "channels": spec.out_channels,
                "latency_us": {c: 1e6 * v for c, v in lat.items()},
                "worst_slowdown_within_12pct": worst,
                "at": at,
                "non_monotone_steps": sum(lat[c - 1] > lat[c] * 1.001 for c in lat if c > 1),
            }
        )
    searched = []
    if target.search_quality.is_file():
        doc = json.loads(target.search_quality.read_text())
        for c in doc.get("cells", []):
            if c["model"] == target.label and c["scheme"] == "channel":
                for m, r in c["methods"].items():
                    searched.append(
                        {
                            "method": m,
                            "budget": c["budget"],
                            "seed": c["seed"],
                            "speedup": 1 / r["cost_ratio"],
                            "test": r["test"],
                        }
                    )
    return {"layers": layers, "searched": searched}


def table(res: dict[str, Any]) -> str:
    """The headline table: measured figure beside the paper's."""
    k = res["kang"]
    lines = [
        f"{'method (paper)':44s} measured on {res.get('model', 'fashion-cnn')} after a "
        f"{FINETUNE_STEPS}-step fine-tune",
        f"{'Kang: ~2x over unstructured, equal density':44s} "
        f"{k['speedup_over_unstructured']:.2f}x fewer cycles at 25% density "
        f"(balanced {k['speedup_over_dense']['balanced']:.2f}x, unstructured "
        f"{k['speedup_over_dense']['unstructured']:.2f}x over dense); test "
        f"{100 * k['accuracy']['balanced']:.2f} vs {100 * k['accuracy']['unstructured']:.2f}% "
        f"(dense {100 * k['accuracy']['dense']:.2f}%)",
    ]

    def best(rows, key, limit):
        ok = [r for r in rows if r["loss_points"] <= limit]
        return max(ok, key=key) if ok else None

    li = res["liang"]
    for limit in (1.5, 3.0):
        r = best(li["policies"], lambda r: -r["crossbar_ratio"], limit)
        text = (
            f"{100 * (1 - r['crossbar_ratio']):.0f}% fewer crossbars ({r['crossbars']:.0f} of "
            f"{li['dense_crossbars']:.0f}) at {r['loss_points']:.2f} pts loss"
            if r
            else "no uniform policy within that loss"
        )
        lines.append(f"{f'Liang: 44-72% fewer crossbars (loss <= {limit})':44s} {text}")
    for limit in (1.0, 2.5):
        r = best(res["ikr"]["policies"], lambda r: r["param_compression"], limit)
        text = (
            f"{r['param_compression']:.1f}x fewer parameters, {r['op_reduction']:.1f}x fewer "
            f"MACs at {r['loss_points']:.2f} pts loss"
            if r
            else "no uniform policy within that loss"
        )
        lines.append(f"{f'IKR: 10x params, 7x ops at < 1% (<= {limit})':44s} {text}")
    for limit in (0.2, 1.0):
        r = best(res["pcnn"]["policies"], lambda r: r["compression"], limit)
        text = (
            f"{r['compression']:.1f}x compression, {100 * r['index_share']:.1f}% of it index, "
            f"at {r['loss_points']:.2f} pts loss"
            if r
            else "no uniform policy within that loss"
        )
        lines.append(f"{f'PCNN: 8.4x at 0.2% loss, ~3% index (<= {limit})':44s} {text}")
    rd = res["radu"]
    worst = max(rd["layers"], key=lambda r: r["worst_slowdown_within_12pct"])
    steps = sum(r["non_monotone_steps"] for r in rd["layers"])
    lines.append(
        f"{'Radu: 12% fewer channels -> up to 2x slower':44s} worst slowdown from removing "
        f"<= 12% of a layer's channels {worst['worst_slowdown_within_12pct']:.2f}x "
        f"({worst['layer']}: {worst['at'][0]} -> {worst['at'][1]} channels); {steps} "
        "channel counts where one channel fewer is slower"
    )
    baselines = {"uniform", "random", "greedy", "tpe", "cmaes"}
    agents = sorted({r["method"] for r in rd["searched"]} - baselines)
    for agent in agents:
        by_budget: dict[float, list[dict[str, Any]]] = {}
        for r in rd["searched"]:
            if r["method"] == agent:
                by_budget.setdefault(r["budget"], []).append(r)
        text = "; ".join(
            f"budget {b}: {np.mean([r['speedup'] for r in rs]):.2f}x faster than dense at "
            f"{100 * np.mean([r['test'] for r in rs]):.2f}% test"
            for b, rs in sorted(by_budget.items())
        )
        lines.append(
            f"{'Radu: aware pruning up to 3x faster (cuDNN)':44s} {agent}'s policies, {text}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every row, print the table, write JSON."""
    rows = {"kang": kang, "liang": liang, "ikr": ikr, "pcnn": pcnn, "radu": radu}
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=list(TARGETS), default="fashion-cnn")
    p.add_argument("--out", type=Path, help="default: per model (headlines[_resnet20].json)")
    p.add_argument(
        "--rows",
        nargs="+",
        choices=list(rows),
        default=list(rows),
        help="measure only these rows; the others are kept from --out",
    )
    p.add_argument("--report", action="store_true", help="print the table of --out, run nothing")
    args = p.parse_args(argv)
    target = TARGETS[args.model]
    args.out = args.out or target.out
    res: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.report:
        if not res:
            p.error(f"--report: no results in {args.out}")
        print(table(res))
        return 0
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    missing = [r for r in rows if r not in res and r not in args.rows]
    if missing:
        p.error(f"{args.out} has no {', '.join(missing)} rows yet: measure them too (--rows)")
    for name in args.rows:
        t0 = time.perf_counter()
        res[name] = rows[name](target)
        res.setdefault("seconds", {})[name] = time.perf_counter() - t0
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    res["finetune_steps"] = FINETUNE_STEPS
    res["model"] = target.label
    print(table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
