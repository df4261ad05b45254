"""Environment speed: step time, terminal evaluation time, episodes per second.

Measures, on the 2-core development machine:
- the time of an env step without the terminal evaluation, on resnet18 (untrained:
  speed does not depend on the weights) and digits-cnn, for a separable scheme
  (balanced) and a coupled one (channel: exact per-layer accounting);
- the time of a terminal ``holdout`` evaluation (BN re-estimation, head re-fit, holdout
  accuracy) on digits-cnn (300 holdout images), fashion-cnn and resnet20 on Fashion-MNIST
  (1,000 of its holdout images, the default), with and without the BatchNorm-folded twin
  the proxy scores through (``envs.proxies.folding``);
- the floating-point work of that evaluation (GFLOP) and the rate it runs at, against
  this core's fp32 matrix-product rate (one thread): the time no fp32 implementation of
  the same evaluation can beat on this core;
- episodes per second of random actions for 1 and 2 environments (SB3 DummyVecEnv and
  SubprocVecEnv, one torch thread per process) on digits-cnn, and for 1 environment on
  fashion-cnn (skipped, with a note, where Fashion-MNIST is not installed);
- the default (fast, ``int8``) ``holdout`` evaluation against the full ``fp32`` one on
  fashion-cnn and fashion-vgg, side by side in this process on the same random feasible
  policies (drawn as ``bench/proxy_fidelity.py`` draws them, at its budgets): the median
  time of each and Kendall's tau between their scores, one line per workload:
  ``WORKLOAD episode_ms=X fp32_ms=Y tau=Z``.

The terminal-evaluation timings and GFLOP above are of the full ``fp32`` evaluation (the
default before ``int8``); the episodes/s are of the default evaluation. No GPU is used.

Prints a table and writes JSON to bench/results/env_speed.json (merged into what is there:
sections this run does not produce are kept).
Usage: python -m bench.env_speed [--quick]; ``--report`` prints that file's table, running nothing.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from envs import TaskSpec, make_env, make_task

RESULTS = Path(__file__).resolve().parent / "results"


def step_time_ms(model: str, scheme: str, hardware: str, episodes: int) -> dict:
    """Median time of non-terminal steps (ms) and the one-off task build time (s)."""
    t0 = time.perf_counter()
    task = make_task(TaskSpec(model=model, scheme=scheme, hardware=hardware))
    build_s = time.perf_counter() - t0
    budget = task.min_cost_ratio + 0.5 * (1 - task.min_cost_ratio)
    # The terminal step (proxy evaluation) is never taken here: that is timed separately.
    env = make_env(task, budget=budget, proxy="holdout")
    rng = np.random.default_rng(0)
    times = []
    for ep in range(episodes):
        env.reset(seed=ep)
        for _ in range(env.n_steps - 1):
            a = rng.uniform(-1, 1, 1).astype(np.float32)
            t = time.perf_counter()
            env.step(a)
            times.append(time.perf_counter() - t)
    return {
        "model": model,
        "scheme": scheme,
        "hardware": hardware,
        "decisions": env.n_steps,
        "coupled": bool(task.ledger.coupled),
        "build_s": build_s,
        "step_ms_median": 1e3 * float(np.median(times)),
        "step_ms_p90": 1e3 * float(np.percentile(times, 90)),
    }


def terminal_eval_ms(
    repeats: int, model: str = "digits-cnn", data: str | None = None
) -> dict[str, float]:
    """Median time (ms) of one full ``fp32`` ``holdout`` evaluation of ``model`` (distinct
    policies), as the proxy runs it (``folded``: scored through the BatchNorm-folded twin)
    and with the twin switched off (``unfolded``), alternating on the same policies so
    that both see the same machine load."""
    fields = {} if data is None else {"data": data}
    task = make_task(TaskSpec(model=model, scheme="balanced", hardware="accel-kang-16", **fields))
    env = make_env(
        task, budget=0.5, proxy="holdout", proxy_params={"precision": "fp32"}, cache_size=0
    )
    proxy = env.proxy
    twin = proxy._twin
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {"folded": [], "unfolded": []}
    for _ in range(repeats + 1):
        masks = task.masks(tuple(int(rng.integers(len(d.levels))) for d in task.decisions))
        for kind in times:
            proxy._twin = twin if kind == "folded" else None
            t = time.perf_counter()
            proxy.evaluate(masks)
            times[kind].append(time.perf_counter() - t)
    proxy._twin = twin
    return {k: 1e3 * float(np.median(v[1:])) for k, v in times.items()}


def eval_gflop(model: str = "digits-cnn", data: str | None = None) -> float:
    """Floating-point work (GFLOP, convolutions and matrix products as
    ``torch.utils.flop_counter`` counts them) of one ``holdout`` evaluation of ``model``:
    BatchNorm re-estimation, head re-fit and the scoring pass."""
    from torch.utils.flop_counter import FlopCounterMode

    fields = {} if data is None else {"data": data}
    task = make_task(TaskSpec(model=model, scheme="balanced", hardware="accel-kang-16", **fields))
    proxy = make_env(
        task, budget=0.5, proxy="holdout", proxy_params={"precision": "fp32"}, cache_size=0
    ).proxy
    masks = task.masks(tuple(len(d.levels) // 2 for d in task.decisions))
    with FlopCounterMode(display=False) as counter:
        proxy.evaluate(masks)
    return counter.get_total_flops() / 1e9


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """This core's fp32 matrix-product rate (GFLOP/s, one thread, best of ``repeats``):
    the rate a compute-bound evaluation cannot beat."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _env(**kwargs) -> object:
    torch.set_num_threads(1)
    return make_env(**kwargs)


def episodes_per_second(n_envs: int, episodes: int, model: str = "digits-cnn") -> float:
    """Random-action episodes per second on ``model`` with the holdout proxy."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    kwargs = {"model": model, "budget": 0.5, "proxy": "holdout", "cache_size": 0}
    fns = [functools.partial(_env, **kwargs) for _ in range(n_envs)]
    venv = DummyVecEnv(fns) if n_envs == 1 else SubprocVecEnv(fns, start_method="spawn")
    try:
        venv.seed(0)
        venv.reset()
        rng = np.random.default_rng(0)
        done_count = 0
        t = time.perf_counter()
        while done_count < episodes:
            actions = rng.uniform(-1, 1, (n_envs, 1)).astype(np.float32)
            _, _, dones, _ = venv.step(actions)
            done_count += int(dones.sum())
        return done_count / (time.perf_counter() - t)
    finally:
        venv.close()


#: Workloads of the fast-versus-full evaluation check (issue 27), and the random feasible
#: policies it scores on each (full run, --quick).
FAST_EVAL_WORKLOADS = ("fashion-cnn", "fashion-vgg")
FAST_EVAL_POLICIES = {"full": 200, "quick": 60}
#: Schemes the policies are drawn under (``bench/proxy_fidelity.py``'s default schemes).
FAST_EVAL_SCHEMES = ("balanced", "unstructured")


def _proxy_fidelity() -> object:
    """``bench/proxy_fidelity.py`` as a module (imported when needed: it imports scipy)."""
    from bench import proxy_fidelity

    return proxy_fidelity


def _budgets(model: str) -> list[float]:
    """``bench/proxy_fidelity.py``'s budgets for ``model`` (fashion-cnn's where it has none:
    fashion-vgg runs on the same data)."""
    networks = _proxy_fidelity().NETWORKS
    return list(networks.get(model, networks["fashion-cnn"])["budgets"])


def random_feasible_masks(workload: object, n: int, seed: int = 0) -> list[dict]:
    """``n`` random feasible policies' masks, drawn as ``bench/proxy_fidelity.py`` draws
    them (its ``sample_policy`` and ``masks_for``, its per-cell seeding) at its budgets for
    the workload (fashion-cnn's for a network it has none for: the same data), split
    evenly over ``FAST_EVAL_SCHEMES`` and the budgets."""
    from pruning import get_scheme, inspect_model

    pf = _proxy_fidelity()
    budgets = _budgets(workload.name)
    layers = inspect_model(workload.model, workload.example_input)
    sizes = np.asarray([spec.params for spec in layers], dtype=float)
    cells = [(scheme, budget) for scheme in FAST_EVAL_SCHEMES for budget in budgets]
    out = []
    for i, (scheme_name, budget) in enumerate(cells):
        scheme = get_scheme(scheme_name)
        levels = [np.asarray(scheme.levels(spec), dtype=float) for spec in layers]
        rng = np.random.default_rng([seed, int(budget * 1000)])
        want = n // len(cells) + (i < n % len(cells))
        drawn = 0
        while drawn < want:
            policy = pf.sample_policy(rng, levels, sizes, budget)
            if policy is not None:
                out.append(pf.masks_for(workload, scheme, layers, policy))
                drawn += 1
    return out


def fast_vs_full(model: str, n_policies: int) -> dict:
    """The default ``holdout`` evaluation against the full ``fp32`` one on ``model``.

    Both proxies score the same ``n_policies`` random feasible policies in this process,
    alternating which goes first, so that both see the same machine load. Returns the
    median wall-clock time of each (ms), the median of the per-policy time ratios, the
    same from thread CPU time (less sensitive to a busy machine), Kendall's tau between
    the two scores and the largest score difference.
    """
    from scipy.stats import kendalltau

    from envs.proxies.builtin import get_proxy
    from envs.workloads.builtin import get_workload

    workload = get_workload(model)
    masks = random_feasible_masks(workload, n_policies)
    fast = get_proxy("holdout", workload=workload)  # the default evaluation
    full = get_proxy("holdout", workload=workload, precision="fp32")
    for proxy in (fast, full):  # warm-up (first oneDNN primitive creation), not timed
        proxy.evaluate({})
    scores: dict[str, list[float]] = {"fast": [], "full": []}
    wall: dict[str, list[float]] = {"fast": [], "full": []}
    cpu: dict[str, list[float]] = {"fast": [], "full": []}
    images: list[int] = []  # holdout images the default scored (fewer: stopped by racing)
    for i, m in enumerate(masks):
        order = (("fast", fast), ("full", full)) if i % 2 else (("full", full), ("fast", fast))
        for kind, proxy in order:
            t, c = time.perf_counter(), time.thread_time()
            scores[kind].append(proxy.evaluate(m))
            wall[kind].append(time.perf_counter() - t)
            cpu[kind].append(time.thread_time() - c)
            if kind == "fast":
                images.append(fast.last_images)
    tau = float(kendalltau(scores["fast"], scores["full"])[0])
    return {
        "policies": len(masks),
        "schemes": list(FAST_EVAL_SCHEMES),
        "budgets": _budgets(model),
        "default": {
            "precision": fast.precision,
            "int8": fast._int8 is not None,
            "bn_images": fast.bn_images,
            "race": fast.race,
        },
        "holdout_images": int(full._holdout[1].shape[0]),
        "images_per_eval_mean": float(np.mean(images)),
        "raced_share": float(np.mean(np.asarray(images) < full._holdout[1].shape[0])),
        "episode_ms": 1e3 * float(np.median(wall["fast"])),
        "fp32_ms": 1e3 * float(np.median(wall["full"])),
        "ratio_of_medians": float(np.median(wall["full"]) / np.median(wall["fast"])),
        "median_ratio": float(np.median(np.asarray(wall["full"]) / np.asarray(wall["fast"]))),
        "cpu_episode_ms": 1e3 * float(np.median(cpu["fast"])),
        "cpu_fp32_ms": 1e3 * float(np.median(cpu["full"])),
        "cpu_ratio_of_medians": float(np.median(cpu["full"]) / np.median(cpu["fast"])),
        "tau": tau,
        "max_abs_diff": float(np.max(np.abs(np.subtract(scores["fast"], scores["full"])))),
        "scores": scores,
    }


def fast_eval_lines(fast: dict) -> list[str]:
    """The ``WORKLOAD episode_ms=X fp32_ms=Y tau=Z`` lines, and one line of detail each."""
    lines = [
        "default (int8) vs full fp32 holdout evaluation, same run, same random feasible "
        "policies (median ms; shared machine):"
    ]
    for model, r in fast["workloads"].items():
        x, y, z = r["episode_ms"], r["fp32_ms"], r["tau"]
        lines.append(f"{model} episode_ms={x:.1f} fp32_ms={y:.1f} tau={z:.3f}")
        lines.append(
            f"  ({r['policies']} policies; fp32/default {r['ratio_of_medians']:.2f}x (median of "
            f"per-policy ratios {r['median_ratio']:.2f}x); CPU time {r['cpu_episode_ms']:.1f} vs "
            f"{r['cpu_fp32_ms']:.1f} ms, {r['cpu_ratio_of_medians']:.2f}x; racing stopped "
            f"{100 * r['raced_share']:.0f}% early, {r['images_per_eval_mean']:.0f} of "
            f"{r['holdout_images']} images on average; largest score difference "
            f"{r['max_abs_diff']:.3f})"
        )
    lines.append(f"GPU: {fast['gpu']}")
    return lines


def table(doc: dict) -> str:
    """The printed table of a results dict (``main``'s or ``env_speed.json``'s)."""
    lines = [
        f"{'model':12s} {'scheme':9s} {'hardware':15s} {'steps':>5s} {'coupled':>7s} "
        f"{'build s':>8s} {'step ms':>8s} {'p90 ms':>7s}"
    ]
    for r in doc["steps"]:
        lines.append(
            f"{r['model']:12s} {r['scheme']:9s} {r['hardware']:15s} {r['decisions']:5d} "
            f"{str(r['coupled']):>7s} {r['build_s']:8.2f} {r['step_ms_median']:8.3f} "
            f"{r['step_ms_p90']:7.3f}"
        )
    lines.append("")
    peak = doc["matmul_gflops_one_thread"]
    for m, ms in doc["holdout_eval_ms_median"].items():
        gflop = doc["holdout_eval_gflop"][m]
        lines.append(
            f"terminal holdout evaluation, {m}: {ms['folded']:.1f} ms "
            f"({ms['unfolded']:.1f} ms without the BatchNorm-folded twin); "
            f"{gflop:.2f} GFLOP, {gflop / ms['folded'] * 1e3:.0f} GFLOP/s; "
            f"{gflop / peak * 1e3:.0f} ms at the matmul rate"
        )
    lines.append(f"this core's fp32 matmul rate (one thread, 2048 x 2048): {peak:.0f} GFLOP/s")
    for n, rate in doc["episodes_per_s"].items():
        lines.append(f"episodes/s with {n} env(s), digits-cnn + holdout: {rate:.1f}")
    fashion_rate = doc["fashion_cnn_episodes_per_s"]
    if fashion_rate is None:
        lines.append("fashion-cnn skipped: Fashion-MNIST is not installed (make data)")
    else:
        lines.append(f"episodes/s with 1 env, fashion-cnn + holdout: {fashion_rate:.2f}")
    if doc.get("fast_eval"):
        lines.append("")
        lines.extend(fast_eval_lines(doc["fast_eval"]))
    return "\n".join(lines)


def main() -> None:
    """Run the measurements, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--report", action="store_true", help="print the stored table, run nothing")
    args = parser.parse_args()
    if args.report:
        print(table(json.loads((RESULTS / "env_speed.json").read_text())))
        return
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    eps = 5 if args.quick else 30

    print("timing env steps...", file=sys.stderr, flush=True)
    steps = [
        step_time_ms("digits-cnn", "balanced", "accel-kang-16", eps),
        step_time_ms("digits-cnn", "channel", "gpu-jetson-tx2", eps),
        step_time_ms("resnet18", "balanced", "accel-kang-16", eps),
        step_time_ms("resnet18", "channel", "gpu-jetson-tx2", eps),
    ]
    print("timing terminal evaluations...", file=sys.stderr, flush=True)
    from envs.workloads.data import FASHION_MNIST_DIR, is_idx_dir

    fashion = is_idx_dir(FASHION_MNIST_DIR)
    models = {"digits-cnn": ("digits-cnn", None)}
    if fashion:
        models["fashion-cnn"] = ("fashion-cnn", None)
        models["resnet20-fashion"] = ("resnet20", "fashion-mnist")
    term = {
        label: terminal_eval_ms((3 if args.quick else 10) * (2 if "resnet" in label else 5), *md)
        for label, md in models.items()
    }
    gflop = {label: eval_gflop(*md) for label, md in models.items()}
    peak = matmul_gflops()
    print("timing episodes with 1 and 2 envs...", file=sys.stderr, flush=True)
    eps_rate = {n: episodes_per_second(n, 40 if args.quick else 200) for n in (1, 2)}
    fashion_rate = (
        episodes_per_second(1, 10 if args.quick else 50, "fashion-cnn") if fashion else None
    )

    fast = None
    if fashion:
        print("timing the default against the full fp32 evaluation...", file=sys.stderr, flush=True)
        n = FAST_EVAL_POLICIES["quick" if args.quick else "full"]
        fast = {
            "gpu": "none: no device machine was lent to this task (issue 27); CPU only",
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "quick": bool(args.quick),
            "workloads": {m: fast_vs_full(m, n) for m in FAST_EVAL_WORKLOADS},
        }

    doc = {
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "steps": steps,
        "holdout_eval_ms_median": term,
        "holdout_eval_gflop": gflop,
        "matmul_gflops_one_thread": peak,
        "episodes_per_s": {str(k): v for k, v in eps_rate.items()},
        "fashion_cnn_episodes_per_s": fashion_rate,
        **({"fast_eval": fast} if fast is not None else {}),
    }
    print(table(doc))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "env_speed.json"
    # Merge: keep the sections of the stored file this run does not produce.
    stored = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**stored, **doc}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
