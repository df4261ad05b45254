"""How well do the accuracy proxies rank pruning policies? (Kendall's tau vs fine-tuned accuracy)

Two regimes:

1. **Random feasible policies.** For each network (fashion-cnn and resnet20 on
   Fashion-MNIST; digits-cnn and resnet20 on the bundled digits), scheme (``balanced``,
   ``unstructured``) and budget (fraction of the prunable weights kept), it draws random
   feasible policies (per-layer densities from ``scheme.levels(layer)``, with a random
   spread between layers, totalling at most the budget), scores each with every proxy and
   compares with the *truth*: the test accuracy after a real fine-tune of the masked
   network (cosine SGD, masks held fixed, then BatchNorm re-estimation; length per
   network).
2. **The best policies searches find** (``--top-from bench/results/search_quality.json``):
   per setting of the search-quality benchmark, the best policy of every method and seed,
   whose truth that benchmark measured (mean test accuracy of its fine-tunes). This is the
   regime that decides which method wins: policies that all score well, close together.
   Every proxy scores every policy; Kendall's tau is per setting, then averaged.

Reports Kendall's tau and the median time per proxy evaluation; prints a table and writes
``bench/results/proxy_fidelity.json`` (``--top-from`` writes ``proxy_fidelity_top.json``).

    python -m bench.proxy_fidelity --networks fashion-cnn resnet20-fashion
    python -m bench.proxy_fidelity --top-from bench/results/search_quality.json
    python -m bench.proxy_fidelity --quick    # 8 policies per budget
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]

from bench.stats import write_json  # noqa: E402
from envs.proxies.builtin import get_proxy  # noqa: E402
from envs.workloads.base import Workload  # noqa: E402
from envs.workloads.builtin import get_workload  # noqa: E402
from envs.workloads.evaluation import (  # noqa: E402
    accuracy,
    finetune,
    iter_batches,
    reestimate_batchnorm,
)
from pruning import MaskSwitcher, get_scheme, inspect_model  # noqa: E402

#: Proxy label -> (registry name, parameters).
PROXY_SET: dict[str, tuple[str, dict[str, Any]]] = {
    "holdout": ("holdout", {}),
    "holdout-bn-only": ("holdout", {"refit_head": False}),
    "holdout-raw": ("holdout", {"bn_batches": 0, "refit_head": False}),
    "finetune": ("finetune", {"steps": 10}),
    "finetune-40": ("finetune", {"steps": 40}),
    "weight-energy": ("weight-energy", {}),
    "weight-energy-params": ("weight-energy", {"sensitivity": "params"}),
    # energy_weight 1: the best of {0.25, 0.5, 1, 2, 4} over the random policies (regime 1).
    "holdout-energy": ("holdout-energy", {"energy_weight": 1.0}),
}

#: Row label of the truth's self-agreement (its first fine-tune against its second).
TRUTH_SELF = "(truth: ft 0 vs ft 1)"

#: Per network: budgets (kept share of the prunable weights), fine-tune epochs of the truth,
#: overrides of the finetune proxy. resnet20 at 32x32 costs ~65x digits-cnn per image on
#: CPU, so it gets one budget, a 1-epoch truth and a cheaper finetune proxy to keep the
#: full run near 10 minutes on 2 cores.
#: ``truth_steps`` (batch 64), where given, replaces ``epochs``: on Fashion-MNIST a third
#: of an epoch (300 steps) is the search-quality benchmark's truth.
NETWORKS: dict[str, dict[str, Any]] = {
    "fashion-cnn": {
        "model": "fashion-cnn",
        "data": "fashion-mnist",
        "budgets": [0.3],
        "epochs": 1,
        "truth_steps": 300,
        "finetune": {},
    },
    "resnet20-fashion": {
        "model": "resnet20",
        "data": "fashion-mnist",
        "budgets": [0.3],
        "epochs": 1,
        "truth_steps": 300,
        "finetune": {"steps": 5, "batch_size": 32},
    },
    "digits-cnn": {"budgets": [0.3, 0.15], "epochs": 2, "finetune": {}},
    "resnet20": {"budgets": [0.2], "epochs": 1, "finetune": {"steps": 5, "batch_size": 32}},
}


def sample_policy(
    rng: np.random.Generator,
    levels: list[np.ndarray],
    sizes: np.ndarray,
    budget: float,
    *,
    spread: float = 0.6,
    tol: float = 0.06,
) -> list[float] | None:
    """Per-layer levels with a random allocation whose kept share is in [budget-tol, budget].

    Layer ``l`` gets ``snap(c * z_l)`` with ``z_l`` log-normal (sigma ``spread``) and the
    largest scale ``c`` that keeps the total within budget (bisection; the total is
    monotone in ``c``). None when the levels cannot land within ``tol`` of the budget.
    """
    z = rng.lognormal(0.0, spread, size=len(levels))

    def snapped(c: float) -> np.ndarray:
        out = []
        for lv, zl in zip(levels, z, strict=True):
            i = int(np.searchsorted(lv, min(c * zl, 1.0) + 1e-9, side="right")) - 1
            out.append(lv[max(i, 0)])
        return np.asarray(out)

    def share(c: float) -> float:
        return float((snapped(c) * sizes).sum() / sizes.sum())

    lo, hi = 0.0, 2.0 / float(z.min())
    if share(lo) > budget:
        return None
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) <= budget else (lo, mid)
    dens = snapped(lo)
    achieved = float((dens * sizes).sum() / sizes.sum())
    return [float(d) for d in dens] if achieved >= budget - tol else None


def masks_for(
    workload: Workload, scheme: Any, layers: list[Any], densities: list[float]
) -> dict[str, torch.Tensor]:
    """Scheme masks of the policy (dense layers get no mask)."""
    named = dict(workload.model.named_parameters())
    masks = {}
    for spec, d in zip(layers, densities, strict=True):
        if d < 1.0:
            key = spec.name + ".weight"
            masks[key] = scheme.mask(named[key].detach(), d, spec)
    return masks


def true_accuracy(
    workload: Workload,
    masks: dict[str, torch.Tensor],
    *,
    steps: int,
    lr: float,
    bn: list[torch.Tensor],
    seed: int = 0,
) -> float:
    """Test accuracy after ``steps`` of cosine SGD fine-tuning (batch 64), masks fixed."""
    model = copy.deepcopy(workload.model)
    MaskSwitcher(model).set(masks)
    finetune(model, workload.train, steps=steps, lr=lr, schedule="cosine", seed=seed)
    reestimate_batchnorm(model, bn)
    return accuracy(model, workload.test)


def run_network(
    name: str,
    *,
    schemes: list[str],
    budgets: list[float],
    n: int,
    epochs: int,
    seed: int,
    finetune_params: dict[str, Any] | None = None,
    truth_steps: int | None = None,
    proxies: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Every (scheme, budget) cell of one network."""
    t0 = time.perf_counter()
    cfg = NETWORKS[name]
    w = get_workload(cfg.get("model", name), data=cfg.get("data"))
    steps = truth_steps or epochs * max(1, len(w.train) // 64)
    print(
        f"[{name}] workload ready in {time.perf_counter() - t0:.1f}s "
        f"(test accuracy {accuracy(w.model, w.test):.4f})",
        flush=True,
    )
    layers = inspect_model(w.model, w.example_input)
    sizes = np.asarray([spec.params for spec in layers], dtype=float)
    built = {}
    for label, (pname, params) in PROXY_SET.items():
        if proxies is not None and label not in proxies:
            continue
        t = time.perf_counter()
        if pname == "finetune":
            params = {**params, **(finetune_params or {})}
        built[label] = get_proxy(pname, workload=w, **params)
        print(f"[{name}] proxy {label}: set up in {time.perf_counter() - t:.2f}s", flush=True)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(w.train), generator=gen)[:256]
    bn = [x for x, _ in iter_batches(w.train, batch_size=128, indices=idx)]
    cells = []
    for scheme_name in schemes:
        scheme = get_scheme(scheme_name)
        levels = [np.asarray(scheme.levels(spec), dtype=float) for spec in layers]
        for budget in budgets:
            rng = np.random.default_rng([seed, int(budget * 1000)])
            policies: list[list[float]] = []
            while len(policies) < n:
                p = sample_policy(rng, levels, sizes, budget)
                if p is not None:
                    policies.append(p)
            truth, scores, times, truth_s = (
                [],
                {k: [] for k in built},
                {k: [] for k in built},
                [],
            )
            t_cell = time.perf_counter()
            for policy in policies:
                masks = masks_for(w, scheme, layers, policy)
                for label, proxy in built.items():
                    t = time.perf_counter()
                    scores[label].append(proxy.evaluate(masks))
                    times[label].append(time.perf_counter() - t)
                t = time.perf_counter()
                truth.append(true_accuracy(w, masks, steps=steps, lr=0.01, bn=bn, seed=seed))
                truth_s.append(time.perf_counter() - t)
            cell = {
                "network": name,
                "scheme": scheme_name,
                "budget": budget,
                "policies": n,
                "truth_epochs": round(steps / max(1, len(w.train) // 64), 3),
                "truth_steps": steps,
                "kept_share": [
                    float((np.asarray(p) * sizes).sum() / sizes.sum()) for p in policies
                ],
                "densities": policies,
                "truth": truth,
                "truth_range": [min(truth), max(truth)],
                "truth_seconds_median": statistics.median(truth_s),
                "proxies": {},
            }
            for label in built:
                tau, pval = kendalltau(scores[label], truth)
                cell["proxies"][label] = {
                    "tau": None if np.isnan(tau) else float(tau),
                    "p_value": None if np.isnan(pval) else float(pval),
                    "ms_per_eval": 1e3 * statistics.median(times[label]),
                    "scores": scores[label],
                }
            cells.append(cell)
            print(
                f"[{name}] {scheme_name} budget {budget}: {n} policies in "
                f"{time.perf_counter() - t_cell:.0f}s, truth {min(truth):.3f}..{max(truth):.3f}",
                flush=True,
            )
    return cells


def run_top(path: Path, models: list[str], proxies: list[str]) -> list[dict[str, Any]]:
    """Regime 2: every proxy on the best policies the search-quality benchmark found."""
    from bench import search_quality as sq

    doc = json.loads(path.read_text())
    cells = [c for c in doc.get("cells", []) if c["model"] in models]
    built: dict[str, dict[str, Any]] = {}
    out = []
    for (model, scheme, hw, budget), group in sorted(sq._by_setting(cells).items()):
        c0 = group[0]
        task, _ = sq._task_and_proxy(
            model,
            scheme,
            hw,
            metric=c0["metric"],
            hardware_params=c0.get("hardware_params"),
            scheme_params=c0.get("scheme_params"),
        )
        if model not in built:
            ft = NETWORKS.get(model, {}).get("finetune", {})
            built[model] = {
                label: get_proxy(
                    pname,
                    workload=task.workload,
                    **({**params, **ft} if pname == "finetune" else params),
                )
                for label, (pname, params) in PROXY_SET.items()
                if label in proxies
            }
        truth, tests = {}, {}
        for g in group:
            for r in g["methods"].values():
                truth[tuple(r["choice"])] = r["test"]
                tests[tuple(r["choice"])] = r.get("tests", [])
        policies = sorted(truth)
        cell: dict[str, Any] = {
            "network": model,
            "scheme": scheme,
            "budget": budget,
            "policies": len(policies),
            "truth_epochs": float("nan"),
            "truth": [truth[p] for p in policies],
            "truth_range": [min(truth.values()), max(truth.values())],
            "choices": [list(p) for p in policies],
            "proxies": {},
            "truth_self_tau": truth_self_tau([tests[p] for p in policies]),
        }
        t_cell = time.perf_counter()
        for label, proxy in built[model].items():
            scores, times = [], []
            for choice in policies:
                t = time.perf_counter()
                scores.append(proxy.evaluate(task.masks(choice)))
                times.append(time.perf_counter() - t)
            tau, pval = kendalltau(scores, cell["truth"])
            cell["proxies"][label] = {
                "tau": None if np.isnan(tau) else float(tau),
                "p_value": None if np.isnan(pval) else float(pval),
                "ms_per_eval": 1e3 * statistics.median(times),
                "scores": scores,
            }
        print(
            f"[top] {model} {scheme} x {hw} {budget}: {len(policies)} policies in "
            f"{time.perf_counter() - t_cell:.0f}s",
            flush=True,
        )
        out.append(cell)
    return out


#: Regime 3 (``--recovered``): fashion-vgg, whose results are taken home after recovery,
#: against the test accuracy after ``epochs`` of the product's recovery
#: (``envs.workloads.recovery``: masked training, cosine schedule from the default lr, the
#: workload's flips and shifts) at aggressive budgets (kept share of the prunable
#: weights), input convolution dense.
RECOVERED: dict[str, Any] = {
    "model": "fashion-vgg",
    "data": "fashion-mnist",
    "scheme": "balanced",
    "hardware": "accel-kang-16",
    "keep_dense": ["first"],
    "budgets": [0.1, 0.2, 0.3],
    "epochs": 3,
}
#: The proxies regime 3 compares (label -> registry name, parameters).
RECOVERED_PROXIES: dict[str, tuple[str, dict[str, Any]]] = {
    "holdout": ("holdout", {}),
    "holdout-fp32": ("holdout", {"precision": "fp32"}),
    "finetune-50": ("finetune", {"steps": 50, "lr": 0.005}),
    "finetune-200": ("finetune", {"steps": 200, "lr": 0.005}),
    "finetune-200-distill": ("finetune", {"steps": 200, "lr": 0.005, "distill": True}),
    "weight-energy": ("weight-energy", {}),
}


def recovered_policies(task, budgets: list[float], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` random feasible policies per budget (level indices of ``task``'s decisions,
    kept share of the decisions' weights within 0.06 below the budget)."""
    levels = [np.asarray(d.levels, dtype=float) for d in task.decisions]
    sizes = np.asarray([sum(m.params for m in d.layers) for d in task.decisions], dtype=float)
    out = []
    for budget in budgets:
        rng = np.random.default_rng([seed, int(budget * 1000)])
        found = 0
        while found < n:
            dens = sample_policy(rng, levels, sizes, budget)
            if dens is None:
                continue
            choice = task.choice_for_densities(
                {d.name: x for d, x in zip(task.decisions, dens, strict=True)}
            )
            out.append({"regime": "random", "setting": task.scheme.name, "budget": budget,
                        "index": found, "choice": choice})  # fmt: skip
            found += 1
    return out


def _kept_share(task, choice: list[int]) -> float:
    """Share of the decisions' weights ``choice`` keeps (what the budgets here bound)."""
    sizes = [sum(m.params for m in d.layers) for d in task.decisions]
    kept = sum(
        float(d.levels[j]) * s for d, j, s in zip(task.decisions, choice, sizes, strict=True)
    )
    return kept / sum(sizes)


def run_recovered(
    *,
    out: Path,
    n: int,
    budgets: list[float],
    epochs: int,
    seed: int,
    proxies: list[str],
    top_from: Path | None,
    top_settings: list[str] | None = None,
) -> dict[str, Any]:
    """Score every policy with every proxy and recover it for the truth; each policy's
    record is written as soon as it is measured (an interrupted run resumes). Random
    policies go budget by budget in turn (a partial run covers every budget alike);
    ``top_settings`` keeps the searched policies of those settings only."""
    from agents.app.finalize import recovered_model, recovery_recipe
    from envs import TaskSpec, make_task

    doc = json.loads(out.read_text()) if out.is_file() else {}
    doc.setdefault("records", [])
    want = {"epochs": epochs, "model": RECOVERED["model"], "seed": seed}
    for key, value in want.items():
        if doc.get(key, value) != value:
            raise SystemExit(f"error: {out} holds records of {key} {doc[key]!r}: pass --out")
    doc.update(want, config=RECOVERED)

    def task_of(fields: dict[str, Any]):
        return make_task(TaskSpec(model=RECOVERED["model"], data=RECOVERED["data"],
                                  keep_dense=RECOVERED["keep_dense"], **fields))  # fmt: skip

    todo: list[tuple[Any, dict[str, Any]]] = []
    main_task = task_of({"scheme": RECOVERED["scheme"], "hardware": RECOVERED["hardware"]})
    drawn = recovered_policies(main_task, budgets, n, seed)
    todo += [(main_task, p) for p in sorted(drawn, key=lambda p: (p["index"], p["budget"]))]
    if top_from is not None:  # the best policies of bench/high_compression.py's searches
        from bench import high_compression as hc

        hc.WORKLOAD.update(model=RECOVERED["model"], data=RECOVERED["data"])
        rows = json.loads(top_from.read_text())["rows"]
        for i, r in enumerate(rows):
            # The uniform policy is no search's find (and far below them: an easy rank).
            if r["method"] == "uniform" or (top_settings and r["setting"] not in top_settings):
                continue
            task = make_task(hc.spec(r["setting"]))
            policy = {"regime": "top", "setting": r["setting"], "budget": r["budget"],
                      "index": i, "choice": r["choice"], "method": r["method"]}  # fmt: skip
            todo.append((task, policy))
    done = {(r["regime"], r["setting"], r["budget"], r["index"]) for r in doc["records"]}
    built: dict[int, dict[str, Any]] = {}
    for task, policy in todo:
        if (policy["regime"], policy["setting"], policy["budget"], policy["index"]) in done:
            continue
        if id(task.workload) not in built:
            built[id(task.workload)] = {
                label: get_proxy(name, workload=task.workload, **params)
                for label, (name, params) in RECOVERED_PROXIES.items()
                if label in proxies
            }
        masks = task.masks(policy["choice"])
        scores, ms = {}, {}
        for label, proxy in built[id(task.workload)].items():
            t = time.perf_counter()
            if hasattr(proxy, "new_search"):
                proxy.new_search()  # no racing against another policy's score
            scores[label] = proxy.evaluate(masks)
            ms[label] = 1e3 * (time.perf_counter() - t)
        t = time.perf_counter()
        rec = recovered_model(task, policy["choice"], recovery_recipe(task, epochs=epochs))
        doc["records"].append({
            **policy,
            "density": task.overall_density(policy["choice"]),
            "kept_share": _kept_share(task, policy["choice"]),
            "truth": rec.after,
            "test_before_recovery": rec.before,
            "truth_seconds": time.perf_counter() - t,
            "scores": scores,
            "ms": ms,
        })  # fmt: skip
        write_json(out, doc)
        print(f"[recovered] {policy['regime']} {policy['setting']} {policy['budget']} "
              f"#{policy['index']}: truth {rec.after:.4f} ({time.perf_counter() - t:.0f} s)",
              flush=True)  # fmt: skip
    return doc


def recovered_table(doc: dict[str, Any]) -> str:
    """Kendall's tau of every proxy against the recovered truth, per regime and setting
    (random policies pooled over budgets, and per budget), with each proxy's median cost."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in doc["records"]:
        groups.setdefault((r["regime"], r["setting"], "all"), []).append(r)
        if r["regime"] == "random":
            groups.setdefault((r["regime"], r["setting"], f"{r['budget']:.2f}"), []).append(r)
    labels = list(dict.fromkeys(k for r in doc["records"] for k in r["scores"]))
    head = f"{'regime':7s} {'setting':10s} {'budget':>6s} {'n':>3s} {'truth range':>13s} "
    head += " ".join(f"{x:>{max(6, len(x))}s}" for x in labels)
    lines = [
        f"{doc.get('model')}: Kendall's tau against the test accuracy after "
        f"{doc.get('epochs')} epochs of recovery",
        head,
    ]
    for (regime, setting, budget), rows in groups.items():
        truth = [r["truth"] for r in rows]
        taus = []
        for x in labels:
            tau = kendalltau([r["scores"][x] for r in rows], truth)[0] if len(rows) > 2 else None
            cell = "nan" if tau is None or np.isnan(tau) else f"{tau:.3f}"
            taus.append(f"{cell:>{max(6, len(x))}s}")
        lines.append(
            f"{regime:7s} {setting:10s} {budget:>6s} {len(rows):3d} "
            f"{f'{min(truth):.3f}-{max(truth):.3f}':>13s} " + " ".join(taus)
        )
    cost = " ".join(
        f"{x} {statistics.median(r['ms'][x] for r in doc['records']):.0f} ms" for x in labels
    )
    truth_s = statistics.median(r["truth_seconds"] for r in doc["records"])
    lines.append(f"median cost per evaluation: {cost}; truth {truth_s:.0f} s per policy")
    return "\n".join(lines)


def truth_self_tau(tests: list[list[float]]) -> float | None:
    """Kendall's tau between the truth's first and second fine-tune over the same policies.

    The truth is itself noisy (each fine-tune draws its own batches), so no proxy can rank
    policies against it much better than one fine-tune ranks them against another: this
    is the ceiling a proxy's tau is read against. None with fewer than two fine-tunes.
    """
    if len(tests) < 2 or any(len(t) < 2 for t in tests):
        return None
    tau, _ = kendalltau([t[0] for t in tests], [t[1] for t in tests])
    return None if np.isnan(tau) else float(tau)


def mean_tau(cells: list[dict[str, Any]]) -> dict[str, float]:
    """Per proxy: Kendall's tau averaged over the cells where it is defined."""
    taus: dict[str, list[float]] = {}
    for c in cells:
        for label, r in c["proxies"].items():
            if r["tau"] is not None:
                taus.setdefault(label, []).append(r["tau"])
        if c.get("truth_self_tau") is not None:
            taus.setdefault(TRUTH_SELF, []).append(c["truth_self_tau"])
    return {k: statistics.fmean(v) for k, v in taus.items()}


def table(cells: list[dict[str, Any]]) -> str:
    """Plain-text table: one row per (network, scheme, budget, proxy)."""
    head = f"{'network':<16} {'scheme':<12} {'budget':>6} {'n':>3} {'E':>5} {'truth range':>13} "
    head += f"{'proxy':<21} {'tau':>6} {'p':>8} {'ms/eval':>8}"
    rows = [head, "-" * len(head)]
    for c in cells:
        rng = f"{c['truth_range'][0]:.3f}-{c['truth_range'][1]:.3f}"
        epochs = "-" if np.isnan(c["truth_epochs"]) else f"{c['truth_epochs']:.2f}"
        lead = (
            f"{c['network']:<16} {c['scheme']:<12} {c['budget']:>6.2f} {c['policies']:>3} "
            f"{epochs:>5} {rng:>13}"
        )
        for label, r in c["proxies"].items():
            tau = "nan" if r["tau"] is None else f"{r['tau']:.3f}"
            p = "nan" if r["p_value"] is None else f"{r['p_value']:.1e}"
            rows.append(f"{lead} {label:<21} {tau:>6} {p:>8} {r['ms_per_eval']:>8.1f}")
        if c.get("truth_self_tau") is not None:
            rows.append(f"{lead} {TRUTH_SELF:<21} {c['truth_self_tau']:>6.3f}")
    return "\n".join(rows)


def tau_grid(cells: list[dict[str, Any]]) -> str:
    """Compact table: one row per setting, one column of Kendall's tau per proxy, a mean row."""
    labels = list(dict.fromkeys(k for c in cells for k in c["proxies"]))
    if any(c.get("truth_self_tau") is not None for c in cells):
        labels.append(TRUTH_SELF)
    short = {TRUTH_SELF: "truth-self"}
    widths = [max(6, len(short.get(x, x))) for x in labels]
    head = f"{'network':<16} {'scheme':<12} {'budget':>6} {'n':>3}  "
    head += " ".join(f"{short.get(x, x):>{w}}" for x, w in zip(labels, widths, strict=True))
    rows = [head, "-" * len(head)]

    def cell_tau(c: dict[str, Any], label: str) -> float | None:
        if label == TRUTH_SELF:
            return c.get("truth_self_tau")
        r = c["proxies"].get(label)
        return None if r is None else r["tau"]

    for c in cells:
        vals = [cell_tau(c, x) for x in labels]
        rows.append(
            f"{c['network']:<16} {c['scheme']:<12} {c['budget']:>6.2f} {c['policies']:>3}  "
            + " ".join(
                f"{'nan' if v is None else f'{v:.3f}':>{w}}"
                for v, w in zip(vals, widths, strict=True)
            )
        )
    means = mean_tau(cells)
    rows.append(
        f"{'mean':<16} {'':<12} {'':>6} {'':>3}  "
        + " ".join(
            f"{means.get(x, float('nan')):>{w}.3f}" for x, w in zip(labels, widths, strict=True)
        )
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 policies per budget")
    ap.add_argument("--policies", type=int, default=30, help="policies per budget")
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--schemes", nargs="+", default=["balanced", "unstructured"])
    ap.add_argument("--budgets", nargs="+", type=float, help="default: per network")
    ap.add_argument("--epochs", type=int, help="fine-tune epochs of the truth (default: per net)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="default bench/results/proxy_fidelity[_top].json")
    ap.add_argument(
        "--top-from",
        type=Path,
        metavar="JSON",
        help="score the best policies of a search-quality results file instead (regime 2)",
    )
    ap.add_argument(
        "--proxies",
        nargs="+",
        choices=list(dict.fromkeys([*PROXY_SET, *RECOVERED_PROXIES])),
        help="default: every proxy of the regime",
    )
    ap.add_argument("--report", type=Path, metavar="JSON", help="print a stored file's table")
    ap.add_argument(
        "--recovered",
        action="store_true",
        help="regime 3: fashion-vgg against its recovered truth (resumable; --policies per "
        "budget, --top-from high_compression results for searched policies)",
    )
    ap.add_argument(
        "--top-settings",
        nargs="+",
        metavar="SETTING",
        help="--recovered --top-from: the searched policies of these settings only",
    )
    args = ap.parse_args(argv)
    results = ROOT / "bench" / "results"
    if args.report is not None:
        try:
            stored = json.loads(args.report.read_text())
            if "records" in stored:
                print(recovered_table(stored))
                return
            cells = stored["cells"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            ap.error(f"--report: cannot read proxy-fidelity results {str(args.report)!r}: {exc}")
        print(table(cells))
        print()
        print(tau_grid(cells))
        return
    if args.top_from is not None and not args.top_from.is_file():
        ap.error(f"--top-from: no such file {str(args.top_from)!r}")
    if args.recovered:
        from bench.high_compression import SETTINGS

        bad = [x for x in args.top_settings or [] if x not in SETTINGS]
        if bad:
            ap.error(f"--top-settings {' '.join(bad)}: valid: {', '.join(SETTINGS)}")
        torch.set_num_threads(args.threads)
        args.proxies = args.proxies or list(RECOVERED_PROXIES)
        unknown = [x for x in args.proxies if x not in RECOVERED_PROXIES]
        if unknown:
            ap.error(f"--proxies {' '.join(unknown)}: --recovered compares "
                     f"{', '.join(RECOVERED_PROXIES)}")  # fmt: skip
        doc = run_recovered(
            out=args.out or results / "proxy_fidelity_recovered.json",
            n=args.policies,
            budgets=args.budgets or RECOVERED["budgets"],
            epochs=args.epochs or RECOVERED["epochs"],
            seed=args.seed,
            proxies=args.proxies,
            top_from=args.top_from,
            top_settings=args.top_settings,
        )
        print(recovered_table(doc))
        return
    args.proxies = args.proxies or list(PROXY_SET)
    unknown = [x for x in args.proxies if x not in PROXY_SET]
    if unknown:
        ap.error(f"--proxies {' '.join(unknown)}: valid: {', '.join(PROXY_SET)}")
    if args.top_from is not None:
        torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        cells = run_top(args.top_from, args.networks, args.proxies)
        total = time.perf_counter() - t0
        print()
        print(table(cells))
        taus = mean_tau(cells)
        print("\nmean tau over settings: " + ", ".join(f"{k} {v:.3f}" for k, v in taus.items()))
        out = args.out or results / "proxy_fidelity_top.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"source": str(args.top_from), "seconds": round(total, 1), "mean_tau": taus}
        out.write_text(json.dumps({"meta": meta, "cells": cells}, indent=1))
        print(f"wrote {out}")
        return
    n = 8 if args.quick else args.policies
    if n < 3:
        ap.error(f"--policies must be >= 3 (Kendall's tau), got {n}")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    cells = []
    for net in args.networks:
        cfg = NETWORKS[net]
        cells += run_network(
            net,
            schemes=args.schemes,
            budgets=args.budgets or cfg["budgets"],
            n=n,
            epochs=args.epochs or cfg["epochs"],
            seed=args.seed,
            finetune_params=cfg["finetune"],
            truth_steps=None if args.epochs else cfg.get("truth_steps"),
            proxies=args.proxies,
        )
    total = time.perf_counter() - t0
    print()
    print(table(cells))
    print("\nmean tau over cells: " + ", ".join(f"{k} {v:.3f}" for k, v in mean_tau(cells).items()))
    print(
        f"total {total:.0f}s with {args.threads} thread(s); truth = test accuracy after "
        "a fine-tune of E epochs"
    )
    out = args.out or results / "proxy_fidelity.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "policies_per_budget": n,
        "networks": NETWORKS,
        "threads": args.threads,
        "seconds": round(total, 1),
        "torch": str(torch.__version__),
        "proxies": {k: {"name": v[0], "params": v[1]} for k, v in PROXY_SET.items()},
    }
    out.write_text(json.dumps({"meta": meta, "cells": cells}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
