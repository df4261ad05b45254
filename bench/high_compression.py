"""Search where compression is high: does a search beat uniform pruning after recovery?

On fashion-vgg, three (scheme, hardware) settings at budgets where the uniform policy
loses at least 5 points of test accuracy before recovery (``--check`` measures that
figure; every row records it):

- pattern on accel-kang-16, memory budget 0.22 (PCNN's SPM index bits counted);
- crossbar on reram-128, crossbar budget 0.4;
- channel on gpu-jetson-tx2 at batch 32, latency budget 0.66.

Every setting keeps the input convolution dense (``keep_dense: [first]``), as the papers
do. Methods: ``uniform`` (the densest uniform policy within budget), ``random``, ``cmaes``
and the product's default agent, each a product search (``agents.search_policy``, the
scheme's default proxy, ``--episodes`` evaluations) for each of ``--seeds`` seeds. Each
method's best policy is then recovered the same way (``envs.workloads.recovery``: masked training,
cosine schedule, the workload's flips and shifts, ``--epochs`` passes) and tested on the
10,000 test images.

Rows go to ``bench/results/high_compression_fashion_vgg.json`` as ``{"rows": [...]}``,
one per (setting, method, seed), each written as soon as it is measured: an interrupted
run resumes where it stopped. ``--report`` prints the table of the file.

    python -m bench.high_compression                   # everything (about 45 minutes)
    python -m bench.high_compression --settings pattern --seeds 0
    python -m bench.high_compression --check           # uniform's loss before recovery
    python -m bench.high_compression --report
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench.stats import RowsFile

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "high_compression_fashion_vgg.json"
#: The workload (``--model``/``--data`` change it for smoke tests).
WORKLOAD = {"model": "fashion-vgg", "data": "fashion-mnist"}

#: Setting name -> task fields and budget.
SETTINGS: dict[str, dict[str, Any]] = {
    "pattern": {"scheme": "pattern", "hardware": "accel-kang-16", "metric": "memory",
                "budget": 0.22},
    "crossbar": {"scheme": "crossbar", "hardware": "reram-128", "metric": "resources",
                 "budget": 0.4},
    "channel": {"scheme": "channel", "hardware": "gpu-jetson-tx2", "metric": "latency",
                "budget": 0.66, "hardware_params": {"batch": 32}},
}  # fmt: skip
METHODS = ("uniform", "random", "cmaes", "ddpg")
#: Layers every setting keeps dense.
KEEP_DENSE = ("first",)


def spec(name: str):
    """The ``TaskSpec`` of setting ``name``."""
    from envs import TaskSpec

    s = SETTINGS[name]
    return TaskSpec(
        model=WORKLOAD["model"],
        data=WORKLOAD["data"],
        scheme=s["scheme"],
        hardware=s["hardware"],
        metric=s["metric"],
        hardware_params=s.get("hardware_params", {}),
        keep_dense=KEEP_DENSE,
    )


def dense_test(task) -> float:
    """Test accuracy of the unpruned model."""
    from agents.app.finalize import masked_model, test_accuracy

    return test_accuracy(task, masked_model(task, list(task.dense_choice)))


def uniform_at_budget(task, name: str) -> list[int]:
    """The densest uniform policy within setting ``name``'s budget; exits with one error
    line when even the sparsest uniform policy is over it (a budget for another model)."""
    from agents.baselines import uniform_choice

    choice = uniform_choice(task, SETTINGS[name]["budget"])
    if choice is None:
        raise SystemExit(
            f"error: {name}: no uniform policy of {task.workload.name} is within budget "
            f"{SETTINGS[name]['budget']} (least cost ratio {task.min_cost_ratio:.3f})"
        )
    return choice


def uniform_loss(name: str) -> dict[str, float]:
    """The uniform policy's test accuracy before recovery and its loss to dense, in points."""
    from agents.app.finalize import masked_model, test_accuracy
    from envs import make_task

    task = make_task(spec(name))
    choice = uniform_at_budget(task, name)
    before = test_accuracy(task, masked_model(task, choice))
    dense = dense_test(task)
    return {"dense_test": dense, "uniform_before": before, "loss_points": 100 * (dense - before)}


def best_choice(name: str, method: str, seed: int, episodes: int) -> dict[str, Any]:
    """A product search's best policy (uniform: the densest uniform policy in budget).

    The search runs through ``agents.search_policy`` on the task built once from the
    committed checkpoint, the agent seeded by ``seed`` (the workload is the same for
    every seed).
    """
    from agents import search_policy
    from envs import make_task

    task = make_task(spec(name))
    if method == "uniform":
        return {"choice": uniform_at_budget(task, name), "holdout": None, "run_id": None}
    found = search_policy(
        task, budget=SETTINGS[name]["budget"], agent=method, episodes=episodes, seed=seed
    )
    return {"choice": list(found.choice), "holdout": found.accuracy, "run_id": None}


def measure(name: str, method: str, seed: int, *, episodes: int, epochs: int) -> dict[str, Any]:
    """One row: search (or uniform), then recover the best policy and test it."""
    from agents.app.finalize import recovered_model, recovery_recipe
    from envs import make_task

    t0 = time.perf_counter()
    found = best_choice(name, method, seed, episodes)
    t1 = time.perf_counter()
    task = make_task(spec(name))
    rec = recovered_model(task, found["choice"], recovery_recipe(task, epochs=epochs))
    return {
        "setting": name,
        **{k: v for k, v in SETTINGS[name].items() if k != "hardware_params"},
        "method": method,
        "seed": seed,
        "episodes": 1 if method == "uniform" else episodes,
        "epochs": epochs,
        "recovery_lr": recovery_recipe(task).lr,
        "keep_dense": list(KEEP_DENSE),
        "choice": found["choice"],
        "cost_ratio": task.cost_ratio(found["choice"]),
        "density": task.overall_density(found["choice"]),
        "holdout": found["holdout"],
        "test_before_recovery": rec.before,
        "test": rec.after,
        "search_seconds": t1 - t0,
        "recovery_seconds": time.perf_counter() - t1,
        "run_id": found["run_id"],
    }


def table(doc: dict[str, Any]) -> str:
    """Per setting and method: recovered test accuracy per seed, mean, and the mean's
    difference to uniform (points), at the cost reached."""
    lines = [
        f"{doc.get('model', '?')}, every best policy recovered {doc.get('epochs', '?')} "
        f"epochs, {doc.get('episodes', '?')} episodes per search",
        f"{'setting':9s} {'budget':>6s} {'uniform loss':>12s} {'method':8s} {'cost':>6s} "
        f"{'pruned':>7s} {'test per seed':>16s} {'mean':>6s} {'vs uniform':>10s}",
    ]
    checks = doc.get("uniform_before_recovery", {})
    for name in SETTINGS:
        rows = [r for r in doc["rows"] if r["setting"] == name]
        if not rows:
            continue
        uniform = [r["test"] for r in rows if r["method"] == "uniform"]
        base = statistics.fmean(uniform) if uniform else float("nan")
        loss = checks.get(name, {}).get("loss_points", float("nan"))
        for method in METHODS:
            got = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
            if not got:
                continue
            mean = statistics.fmean(r["test"] for r in got)
            per_seed = " ".join(f"{100 * r['test']:.2f}" for r in got)
            lines.append(
                f"{name:9s} {got[0]['budget']:6.3f} {loss:12.2f} {method:8s} "
                f"{max(r['cost_ratio'] for r in got):6.3f} "
                f"{100 * statistics.fmean(r['test_before_recovery'] for r in got):7.2f} "
                f"{per_seed:>16s} {100 * mean:6.2f} "
                f"{100 * (mean - base):+10.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the rows not yet in the results file, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--episodes", type=int, default=100, help="evaluations per search")
    p.add_argument("--epochs", type=int, default=1, help="recovery epochs of each best policy")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--model", default=WORKLOAD["model"], help="workload (smoke tests)")
    p.add_argument("--data", default=WORKLOAD["data"], help="its data (smoke tests)")
    p.add_argument("--check", action="store_true", help="uniform's loss before recovery only")
    p.add_argument("--report", action="store_true", help="print the table of --out, run nothing")
    args = p.parse_args(argv)
    WORKLOAD.update(model=args.model, data=args.data)
    res = RowsFile(args.out)
    if args.report:
        if not res.doc["rows"]:
            p.error(f"--report: no rows in {args.out}")
        print(table(res.doc))
        return 0
    if not 1 <= args.epochs <= 50 or not 2 <= args.episodes <= 5000:
        p.error("--epochs must be in [1, 50] and --episodes in [2, 5000]")
    for key, want in (("epochs", args.epochs), ("episodes", args.episodes), ("model", args.model)):
        if res.doc.get(key, want) != want:
            p.error(f"{args.out} holds rows of {key} {res.doc[key]!r}: pass --out")
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HWPRUNE_NO_PROGRESS", "1")
    checks = res.doc.setdefault("uniform_before_recovery", {})
    for name in args.settings:
        if name not in checks:
            checks[name] = uniform_loss(name)
            res.save()
        print(f"{name}: uniform loses {checks[name]['loss_points']:.2f} points before recovery",
              file=sys.stderr, flush=True)  # fmt: skip
    if args.check:
        return 0
    meta = {"epochs": args.epochs, "episodes": args.episodes, "model": args.model}
    for name in args.settings:
        for method in args.methods:
            for seed in [0] if method == "uniform" else args.seeds:
                if res.has(setting=name, method=method, seed=seed):
                    continue
                row = measure(name, method, seed, episodes=args.episodes, epochs=args.epochs)
                res.add([row], **meta)
                print(f"{name} {method} seed {seed}: {100 * row['test']:.2f}% "
                      f"({row['search_seconds'] + row['recovery_seconds']:.0f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
    print(table(res.doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
