"""Environment speed: step time, terminal evaluation time, episodes per second.

Measures, on the 2-core development machine:
- the time of an env step without the terminal evaluation, on resnet18 (untrained:
  speed does not depend on the weights) and digits-cnn, for a separable scheme
  (balanced) and a coupled one (channel: exact per-layer accounting);
- the time of a terminal ``holdout`` evaluation (BN re-estimation, head re-fit, holdout
  accuracy) on digits-cnn (300 holdout images), fashion-cnn and resnet20 on Fashion-MNIST
  (1,000 of its holdout images, the default), with and without the BatchNorm-folded twin
  the proxy scores through (``envs.folding``);
- the floating-point work of that evaluation (GFLOP) and the rate it runs at, against
  this core's fp32 matrix-product rate (one thread): the time no fp32 implementation of
  the same evaluation can beat on this core;
- episodes per second of random actions for 1 and 2 environments (SB3 DummyVecEnv and
  SubprocVecEnv, one torch thread per process) on digits-cnn, and for 1 environment on
  fashion-cnn (skipped, with a note, where Fashion-MNIST is not installed).

Prints a table and writes JSON to bench/results/env_speed.json.
Usage: python bench/env_speed.py [--quick]; ``--report`` prints that file's table, running nothing.
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

# This folder holds bench/hwmodels.py, which would shadow the hwmodels package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from envs import TaskSpec, make_env, make_task  # noqa: E402

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
    """Median time (ms) of one ``holdout`` evaluation of ``model`` (distinct policies), as
    the proxy runs it (``folded``: scored through the BatchNorm-folded twin) and with the
    twin switched off (``unfolded``), alternating on the same policies so that both see
    the same machine load."""
    fields = {} if data is None else {"data": data}
    task = make_task(TaskSpec(model=model, scheme="balanced", hardware="accel-kang-16", **fields))
    env = make_env(task, budget=0.5, proxy="holdout", cache_size=0)
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
    proxy = make_env(task, budget=0.5, proxy="holdout", cache_size=0).proxy
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
    from envs.data import FASHION_MNIST_DIR, is_idx_dir

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

    doc = {
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform()},
        "steps": steps,
        "holdout_eval_ms_median": term,
        "holdout_eval_gflop": gflop,
        "matmul_gflops_one_thread": peak,
        "episodes_per_s": {str(k): v for k, v in eps_rate.items()},
        "fashion_cnn_episodes_per_s": fashion_rate,
    }
    print(table(doc))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "env_speed.json"
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
