"""Search quality: do the learned agents find better pruned networks than simple policies?

For each (scheme, hardware) pair, workload, budget and seed, every method gets the same
number of evaluated episodes (proxy evaluations) on the same task and proxy:

- ``uniform``: the densest uniform density within budget (one evaluation);
- ``random``: random actions through the budget wall;
- ``greedy``: dense start, lower the layer with the least proxy loss per unit of saved
  cost, then fill unused budget (``agents.baselines.GreedyAgent``);
- ``tpe`` and ``cmaes``: Optuna's TPE and CMA-ES samplers, one trial per episode;
- the RL agents (``--agents``, default the product's default agent, ``ddpg``), with their
  YAML hyperparameters (learning, then refining their best policy in the last
  ``refine_fraction`` of the episodes: ``agents.refine``).

Per method it reports the best feasible holdout (proxy) accuracy, the test accuracy of
that policy after the same short fine-tune (``finalize.pruned_model(...,
finetune_steps=N)`` + ``test_accuracy``, averaged over ``--finetune-seeds`` fine-tunes)
and the cost ratio reached (mean +- std over seeds).

Hardware awareness (on unless ``--no-aware``; pairs and flops budgets per workload
``AWARE_SETTINGS``): on a pair, the RL agent searches with the same scheme (same
levels and masks) but the budget on the ``flops`` cost model; its best policy is then
costed on the target (cost ratio ``c_f``, holdout accuracy ``a_f``). The same agent, with
the same number of episodes per search, then searches on the target with budgets ``c_f``
and lower: ``c_f - f * (c_f - floor)`` for each ``f`` of ``AWARE_STEPS`` (floor: the
target's least achievable cost). Reported, per pair and flops budget
(mean +- std over seeds):

- equal target cost: ``a_t - a_f``, the best holdout accuracy of the target search at
  budget ``c_f`` minus the flops policy's;
- equal accuracy: ``c_f - c_t``, where ``c_t`` is the least target cost reached by the
  best policy of a target search whose holdout accuracy is >= ``a_f`` (0 if none is).

Workloads (``WORKLOADS``) and tracks (``TRACKS``): the main track is on real data,
fashion-cnn (every pair, ``FASHION_CNN_SETTINGS``) and resnet20 (``FASHION_RESNET_PAIRS``)
on Fashion-MNIST, whose 10,000 test images resolve 0.01 points; the digits tracks of
earlier rounds (digits-cnn and resnet20 on the bundled digits, digits-aug) are smoke
tracks. A cell's search proxy is its scheme's where the product gives the scheme one
(``agents.app.search.scheme_proxies()``: ``channel``), else its workload's (``SEARCH_PROXY``);
``--proxy`` overrides both. ``--aware-only`` runs just the hardware-awareness check.
The verdicts are counted per track, with a league (``league``): how often each method is
>= every other, the agent's paired differences to each baseline over the settings, and
the count a search tied with the others would reach by chance (labels permuted).

``--shortlist K`` also ends every search as ``SearchConfig.shortlist`` does
(``agents.app.shortlist``: its K best distinct feasible policies re-scored by
``--shortlist-proxy``) and fine-tunes that pick with the same truth, so one run measures
both ends paired; ``--report --pick shortlist`` reports the picks. Every cell keeps each
method's ``TOP_KEPT`` best distinct feasible policies (``"top"``).

Writes ``bench/results/search_quality.json``; ``--quick`` is a CI-sized run. Pairs whose
scheme or hardware preset is not registered are skipped with a note.

The grid (the upper-case constants above: pairs, workloads, tracks, budgets, episodes,
proxies) is data, ``bench/grids/search_quality.yaml``, read at import; the reasons for
each value are written there.

    python -m bench.search_quality --quick --no-aware --workers 1 --out /tmp/sq.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.stats import mean_se, write_json

ROOT = Path(__file__).resolve().parents[1]

GRID = ROOT / "bench" / "grids" / "search_quality.yaml"


def _pair(key: str) -> tuple[str, str]:
    """``"SCHEME HARDWARE"`` (a key of the grid file) as ``(scheme, hardware)``."""
    scheme, hardware = key.split()
    return scheme, hardware


def _settings(raw: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """A grid file's settings per pair, budgets as tuples."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, setting in raw.items():
        out[_pair(key)] = {k: tuple(v) if k == "budgets" else v for k, v in setting.items()}
    return out


def _load_grid(path: Path = GRID) -> dict[str, Any]:
    """The benchmark's grid (``bench/grids/search_quality.yaml``, where its reasons are
    written) as the module's constants: pairs and budgets as tuples, in the file's order."""
    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    lists = ("fashion_resnet_pairs", "aug_pairs", "resnet_pairs")
    named = {k: [tuple(pair) for pair in raw[k]] for k in lists}
    # model_pairs names those lists (YAML aliases): the same list objects here.
    by_id = {id(raw[k]): v for k, v in named.items()}
    return {
        "PAIRS": [tuple(pair) for pair in raw["pairs"]],
        "WORKLOADS": {k: tuple(v) for k, v in raw["workloads"].items()},
        "TRACKS": {k: tuple(v) for k, v in raw["tracks"].items()},
        "FASHION_RESNET_PAIRS": named["fashion_resnet_pairs"],
        "AUG_PAIRS": named["aug_pairs"],
        "RESNET_PAIRS": named["resnet_pairs"],
        "MODEL_PAIRS": {k: by_id[id(v)] for k, v in raw["model_pairs"].items()},
        "EPISODES": dict(raw["episodes"]),
        "FINETUNE": dict(raw["finetune"]),
        "DEFAULT_BUDGETS": tuple(raw["default_budgets"]),
        "PAIR_SETTINGS": _settings(raw["pair_settings"]),
        "FASHION_CNN_SETTINGS": _settings(raw["fashion_cnn_settings"]),
        "RESNET20_FASHION_SETTINGS": _settings(raw["resnet20_fashion_settings"]),
        "MODEL_PAIR_OVERRIDES": {
            (model, *pair): setting
            for model, settings in raw["model_pair_settings"].items()
            for pair, setting in _settings(settings).items()
        },
        "RESNET_PROXY_PARAMS": raw["resnet_proxy_params"],
        "SEARCH_PROXY": {k: tuple(v) for k, v in raw["search_proxy"].items()},
        "DEFAULT_SEARCH_PROXY": tuple(raw["default_search_proxy"]),
        "AWARE_SETTINGS": {k: _settings(v) for k, v in raw["aware_settings"].items()},
        "AWARE_STEPS": tuple(raw["aware_steps"]),
        "BASELINES": tuple(raw["baselines"]),
    }


_GRID = _load_grid()
PAIRS: list[tuple[str, str]] = _GRID["PAIRS"]
WORKLOADS: dict[str, tuple[str, str | None]] = _GRID["WORKLOADS"]
TRACKS: dict[str, tuple[str, ...]] = _GRID["TRACKS"]
FASHION_RESNET_PAIRS: list[tuple[str, str]] = _GRID["FASHION_RESNET_PAIRS"]
AUG_PAIRS: list[tuple[str, str]] = _GRID["AUG_PAIRS"]
RESNET_PAIRS: list[tuple[str, str]] = _GRID["RESNET_PAIRS"]
MODEL_PAIRS: dict[str, list[tuple[str, str]]] = _GRID["MODEL_PAIRS"]
EPISODES: dict[str, int] = _GRID["EPISODES"]
FINETUNE: dict[str, int] = _GRID["FINETUNE"]
DEFAULT_BUDGETS: tuple[float, ...] = _GRID["DEFAULT_BUDGETS"]
PAIR_SETTINGS: dict[tuple[str, str], dict[str, Any]] = _GRID["PAIR_SETTINGS"]
FASHION_CNN_SETTINGS: dict[tuple[str, str], dict[str, Any]] = _GRID["FASHION_CNN_SETTINGS"]
RESNET20_FASHION_SETTINGS: dict[tuple[str, str], dict[str, Any]] = _GRID[
    "RESNET20_FASHION_SETTINGS"
]
MODEL_PAIR_SETTINGS: dict[tuple[str, str, str], dict[str, Any]] = {
    **_GRID["MODEL_PAIR_OVERRIDES"],
    **{("fashion-cnn", *pair): setting for pair, setting in FASHION_CNN_SETTINGS.items()},
    **{("resnet20-fashion", *p): setting for p, setting in RESNET20_FASHION_SETTINGS.items()},
}
RESNET_PROXY_PARAMS: dict[str, Any] = _GRID["RESNET_PROXY_PARAMS"]
SEARCH_PROXY: dict[str, tuple[str, dict[str, Any]]] = _GRID["SEARCH_PROXY"]
DEFAULT_SEARCH_PROXY: tuple[str, dict[str, Any]] = _GRID["DEFAULT_SEARCH_PROXY"]
AWARE_SETTINGS: dict[str, dict[tuple[str, str], dict[str, Any]]] = _GRID["AWARE_SETTINGS"]
AWARE_STEPS: tuple[float, ...] = _GRID["AWARE_STEPS"]
BASELINES: tuple[str, ...] = _GRID["BASELINES"]
OUT = ROOT / "bench" / "results" / "search_quality.json"

_TASKS: dict[tuple, Any] = {}
_PROXIES: dict[str, Any] = {}


def search_proxy(model: str, cell: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The search proxy of a cell: ``--proxy``'s when the run gave one, else its scheme's
    where the product gives the scheme its own (``agents.app.search.scheme_proxies()``), else
    the model's (``SEARCH_PROXY``)."""
    from agents.app.search import default_proxy, scheme_proxies

    if cell is not None and cell.get("search_proxy"):
        name, params = cell["search_proxy"]
        return name, dict(params)
    if cell is not None and cell.get("scheme") in scheme_proxies():
        return default_proxy(cell["scheme"])
    return SEARCH_PROXY.get(model, DEFAULT_SEARCH_PROXY)


def _proxy(label: str, task, spec: tuple[str, dict[str, Any]] | None = None):
    """One search proxy per workload and proxy in this worker (model and data only)."""
    from envs import make_proxy

    name, params = spec or search_proxy(label)
    key = (label, name, json.dumps(params, sort_keys=True))
    if key not in _PROXIES:
        _PROXIES[key] = make_proxy(task, name, **params)
    return _PROXIES[key]


def _task_and_proxy(
    model: str,
    scheme: str,
    hardware: str,
    *,
    metric: str | None = None,
    hardware_params: dict[str, Any] | None = None,
    scheme_params: dict[str, Any] | None = None,
    cost_on: str | None = None,
    proxy: tuple[str, dict[str, Any]] | None = None,
):
    """Task (memoised per worker) and its search proxy; ``cost_on`` swaps the cost model
    while keeping the target's scheme object, hence its levels and masks (for the
    hardware-awareness check)."""
    from envs import TaskSpec, build_task, make_task
    from hwmodels import get_hardware

    hp = tuple(sorted((hardware_params or {}).items()))
    sp = tuple(sorted((scheme_params or {}).items()))
    key = (model, scheme, hardware, metric, hp, sp, cost_on)
    if key not in _TASKS:
        arch, data = WORKLOADS[model]
        spec = TaskSpec(
            model=arch,
            data=data,
            scheme=scheme,
            hardware=hardware,
            metric=metric,
            hardware_params=hardware_params or {},
            scheme_params=scheme_params or {},
        )
        task = make_task(spec)
        if cost_on is not None:  # FLOPs: kept MACs as nominal latency
            task = build_task(task.workload, task.scheme, get_hardware(cost_on), metric="latency")
        _TASKS[key] = task
    task = _TASKS[key]
    return task, _proxy(model, task, proxy)


def feasible_policies(
    task, budget: float, *, exact_limit: int = 200_000, samples: int = 20_000
) -> tuple[int, str]:
    """How many policies are within ``budget``, and how the count was made.

    ``"exact"``: enumeration, when there are at most ``exact_limit`` policies in all.
    ``"at least"``: for separable costs (no coupled decisions: the per-decision tables add
    up to the exact cost), a dynamic programme over costs rounded *up* to 1/20,000 of the
    budget, so the count is a lower bound. ``"about"``: otherwise, the feasible share of
    ``samples`` uniformly random policies (fixed seed) times the total. A setting with a
    handful of feasible policies is no test of search: every method with enough episodes
    finds the best of them.
    """
    import itertools

    import numpy as np

    from hwmodels import within_budget

    sizes = [len(d.levels) for d in task.decisions]
    total = math.prod(sizes)
    if total <= exact_limit:
        count = sum(
            within_budget(task.cost_ratio(choice), budget)
            for choice in itertools.product(*(range(n) for n in sizes))
        )
        return int(count), "exact"
    if not task.ledger.coupled:
        bins = 20_000
        unit = budget * task.table_dense_metric / bins
        fixed = math.ceil(task.fixed_cost.get(task.metric) / unit - 1e-9)
        if fixed > bins:
            return 0, "at least"
        counts = np.zeros(bins + 1)
        counts[fixed] = 1.0
        for d in task.decisions:
            steps = np.ceil(np.asarray(d.metric, dtype=float) / unit - 1e-9).astype(int)
            nxt = np.zeros_like(counts)
            for step in steps[steps <= bins]:
                nxt[step:] += counts[: bins + 1 - step]
            counts = nxt
        return int(counts.sum()), "at least"
    rng = np.random.default_rng(0)
    draws = np.stack([rng.integers(0, n, samples) for n in sizes], axis=1)
    hits = sum(within_budget(task.cost_ratio(tuple(int(j) for j in row)), budget) for row in draws)
    return int(round(total * hits / samples)), "about"


def dense_holdout(task, proxy) -> float:
    """The search proxy's score of the unpruned network (the reference of holdout loss)."""
    return float(proxy.evaluate(task.masks(task.dense_choice)))


_TRUTHS: dict[tuple, float] = {}


def truth(task, cell: dict[str, Any], choice, k: int, pruned_model, test_accuracy) -> float:
    """Test accuracy of ``choice`` after fine-tune number ``k`` (seed ``k``), memoised per
    worker. The seed depends on ``k`` only, so the truth is a function of the policy: two
    methods (or seeds) that find the same policy get the same figure, and the comparison
    is paired. Several fine-tunes per policy: one fine-tune's seed moves the test accuracy
    of the same policy as much as close methods differ."""
    key = (cell["model"], cell["scheme"], cell["hardware"], cell["metric"], tuple(choice))
    key += (str(cell.get("scheme_params")), k, cell["finetune"])
    if key not in _TRUTHS:
        model = pruned_model(task, choice, finetune_steps=cell["finetune"], seed=k)
        _TRUTHS[key] = test_accuracy(task, model)
    return _TRUTHS[key]


#: Best distinct feasible policies kept per method and cell (``"top"``).
TOP_KEPT = 16


def run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """One (model, pair, budget, seed): every method, then the same fine-tune for each."""
    import torch

    from agents import search_policy
    from agents.app.finalize import pruned_model, test_accuracy
    from agents.app.shortlist import shortlist

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    task, proxy = _task_and_proxy(
        cell["model"],
        cell["scheme"],
        cell["hardware"],
        metric=cell["metric"],
        hardware_params=cell.get("hardware_params"),
        scheme_params=cell.get("scheme_params"),
        proxy=search_proxy(cell["model"], cell),
    )
    out = {
        **cell,
        "methods": {},
        "proxy": search_proxy(cell["model"], cell),
        "dense_holdout": dense_holdout(task, proxy),
    }
    out["feasible_policies"], out["feasible_count"] = feasible_policies(task, cell["budget"])
    for method in cell["methods"]:
        if hasattr(proxy, "new_search"):  # racing (int8 holdout): each search its own best
            proxy.new_search()
        # A bound proxy: one per workload and worker, its cached data shared by every search.
        best = search_policy(
            task,
            proxy=proxy,
            agent=method,
            budget=cell["budget"],
            episodes=cell["episodes"],
            seed=cell["seed"],
        )
        tests = [
            truth(task, cell, best.choice, k, pruned_model, test_accuracy)
            for k in range(cell["finetune_seeds"])
        ]
        out["methods"][method] = {
            "holdout": best.accuracy,
            "test": statistics.fmean(tests),
            "tests": tests,
            "cost_ratio": best.cost_ratio,
            "episodes": len(best.records),
            "best_episode": best.episode,
            "seconds": best.seconds,
            "choice": list(best.choice),
            # The search's best distinct feasible policies, best first: what any rule that
            # picks among them (agents.app.shortlist) needs, without running the search again.
            "top": [
                {"choice": r.choice, "holdout": r.accuracy, "cost_ratio": r.cost_ratio}
                for r in shortlist(list(best.records), TOP_KEPT)
            ],
        }
        if cell.get("shortlist"):
            out["methods"][method]["shortlisted"] = _shortlisted(task, cell, best)
    return out


def _shortlisted(task, cell: dict[str, Any], found) -> dict[str, Any]:
    """The search's shortlist re-scored as ``SearchConfig.shortlist`` does (``agents.
    shortlist``), and the same truth for its pick: the figures of a search that ends so."""
    from agents.app.finalize import pruned_model, test_accuracy
    from agents.app.shortlist import rescore, shortlist

    k, name, params = cell["shortlist"]
    proxy = _proxy(cell["model"], task, (name, params))
    t0 = time.perf_counter()
    ranked = rescore(
        shortlist(list(found.records), k), lambda choice: proxy.evaluate(task.masks(tuple(choice)))
    )
    secs = time.perf_counter() - t0
    pick = ranked[0].record
    tests = [
        truth(task, cell, pick.choice, j, pruned_model, test_accuracy)
        for j in range(cell["finetune_seeds"])
    ]
    return {
        "holdout": pick.accuracy,
        "score": ranked[0].score,
        "search_rank": ranked[0].rank,
        "size": len(ranked),
        "test": statistics.fmean(tests),
        "tests": tests,
        "cost_ratio": pick.cost_ratio,
        "best_episode": pick.episode,
        "rescore_seconds": secs,
        "choice": pick.choice,
    }


def picked(cells: list[dict[str, Any]], pick: str) -> list[dict[str, Any]]:
    """``cells`` with each method's figures those of its ``pick``: ``search`` (the search
    proxy's best, as stored) or ``shortlist`` (its shortlist's pick; ``ValueError`` if a
    cell was run without ``--shortlist``). Searches' episodes and seconds are kept."""
    if pick == "search":
        return cells
    out = []
    for c in cells:
        methods = {}
        for m, figs in c["methods"].items():
            if "shortlisted" not in figs:
                raise ValueError(
                    f"{c['model']} {c['scheme']} b={c['budget']} seed={c['seed']}: {m} has no "
                    "shortlist pick (run with --shortlist K)"
                )
            short = figs["shortlisted"]
            methods[m] = {
                **figs,
                **{k: short[k] for k in ("holdout", "test", "tests", "cost_ratio")},
            }
        out.append({**c, "methods": methods})
    return out


def run_aware(cell: dict[str, Any]) -> dict[str, Any]:
    """The hardware-awareness check for one pair, budget and seed (see module docstring)."""
    import torch

    from agents import search_policy

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    names = (cell["model"], cell["scheme"], cell["hardware"])
    params = {
        "metric": cell["metric"],
        "hardware_params": cell.get("hardware_params"),
        "scheme_params": cell.get("scheme_params"),
    }
    # Both searches score on the pair's own search proxy (the scheme's, as in the cells).
    spec = search_proxy(cell["model"], cell)
    target, proxy = _task_and_proxy(*names, **params, proxy=spec)
    flops, fproxy = _task_and_proxy(*names, **params, cost_on="flops", proxy=spec)
    agent, budget, eps, seed = cell["agent"], cell["budget"], cell["episodes"], cell["seed"]
    budget = max(budget, flops.min_cost_ratio + 1e-6)
    t0 = time.perf_counter()
    found = search_policy(flops, proxy=fproxy, agent=agent, budget=budget, episodes=eps, seed=seed)
    c_f = target.cost_ratio(found.choice)
    a_f = found.accuracy
    floor = target.min_cost_ratio + 1e-6
    # Target searches at the flops policy's target cost and below it: the equal-cost
    # comparison is the first; the least target cost whose search still reaches the flops
    # policy's accuracy is the equal-accuracy comparison.
    budgets = sorted({min(c_f - f * max(c_f - floor, 0.0), 1.0) for f in AWARE_STEPS}, reverse=True)
    runs = []
    for b in budgets:
        got = search_policy(target, proxy=proxy, agent=agent, budget=b, episodes=eps, seed=seed)
        runs.append({"budget": b, "cost": got.cost_ratio, "holdout": got.accuracy})
    rec_t = runs[0]
    reached = [r["cost"] for r in runs if r["holdout"] >= a_f - 1e-12]
    c_t = min(reached) if reached else c_f
    return {
        **cell,
        "proxy": spec,
        "flops_budget": budget,
        "flops_policy_flops_cost": found.cost_ratio,
        "flops_policy_target_cost": c_f,
        "flops_policy_holdout": a_f,
        "target_budget": rec_t["budget"],
        "target_policy_target_cost": rec_t["cost"],
        "target_policy_holdout": rec_t["holdout"],
        "target_searches": runs,
        "gain": rec_t["holdout"] - a_f,
        "target_cost_at_flops_accuracy": c_t,
        "cost_saving": c_f - c_t,
        "reached_flops_accuracy": bool(reached),
        "episodes_flops": len(found.records),
        "target_dense_floor": target.min_cost_ratio,
        "seconds": time.perf_counter() - t0,
    }


def _available(scheme: str, hardware: str) -> str | None:
    """None if the pair can run, else why not."""
    from hwmodels import HARDWARE
    from pruning import SCHEMES

    missing = []
    if scheme not in SCHEMES:
        missing.append(f"scheme {scheme!r}")
    if hardware not in HARDWARE:
        missing.append(f"hardware {hardware!r}")
    return f"{' and '.join(missing)} not registered" if missing else None


def _ms(values: list[float], kind: str = "pct") -> str:
    """``mean+-std`` of ``values``: ``pct`` (fractions as percent), ``ratio`` or ``seconds``."""
    scale = 100.0 if kind == "pct" else 1.0
    mean = statistics.fmean(values) * scale
    std = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
    if kind == "pct":
        return f"{mean:6.2f}+-{std:4.2f}"
    if kind == "seconds":
        return f"{mean:6.0f}+-{std:4.0f}"
    return f"{mean:5.3f}+-{std:5.3f}"


def _by_setting(cells: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Cells grouped by (model, scheme, hardware, budget): one group per setting."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["model"], c["scheme"], c["hardware"], c["budget"]), []).append(c)
    return groups


def _tables(cells: list[dict[str, Any]], methods: list[str]) -> str:
    lines = []
    groups = _by_setting(cells)
    for field, title, kind in (
        ("holdout", "best holdout accuracy (%)", "pct"),
        ("test", "test accuracy (%) of each best policy after the same fine-tunes", "pct"),
        ("cost_ratio", "cost ratio reached", "ratio"),
        ("episodes", "evaluated episodes per search", "ratio"),
        ("seconds", "search wall time (s, one core)", "seconds"),
    ):
        lines.append(f"\n## {title}, mean +- std over seeds")
        head = f"{'model':16s} {'scheme':12s} {'hardware':15s} {'budget':>6s}  " + "  ".join(
            f"{m:>13s}" for m in methods
        )
        lines.append(head)
        for (model, scheme, hw, b), group in sorted(groups.items()):
            row = f"{model:16s} {scheme:12s} {hw:15s} {b:6.2f}  "
            vals = []
            for m in methods:
                xs = [g["methods"][m][field] for g in group if m in g["methods"]]
                vals.append(f"{_ms(xs, kind):>13s}" if xs else f"{'-':>13s}")
            lines.append(row + "  ".join(vals))
    return "\n".join(lines)


def _setting_notes(group: list[dict[str, Any]]) -> str:
    """Feasible-policy count and uniform's holdout loss against dense, for one setting."""
    c = group[0]
    notes = []
    if c.get("feasible_policies") is not None:
        # Rows written before the count said how it was made carry feasible_exact.
        how = c.get("feasible_count") or ("exact" if c.get("feasible_exact", True) else "about")
        prefix = {"exact": "", "at least": ">=", "about": "~"}[how]
        notes.append(f"{prefix}{c['feasible_policies']:,} feasible policies")
    if "dense_holdout" in c and "uniform" in c["methods"]:
        loss = 100 * (c["dense_holdout"] - c["methods"]["uniform"]["holdout"])
        notes.append(f"uniform loses {loss:.2f} pts of holdout")
    return f"  [{'; '.join(notes)}]" if notes else ""


def paired_difference(group: list[dict[str, Any]], agent: str) -> tuple[str, float, float]:
    """The best baseline of a setting (by mean test accuracy) and the agent's paired
    difference to it: mean and standard error over the seeds, in points."""
    baselines = [m for m in BASELINES if m in group[0]["methods"]]
    best = max(baselines, key=lambda m: statistics.fmean(g["methods"][m]["test"] for g in group))
    diffs = [100 * (g["methods"][agent]["test"] - g["methods"][best]["test"]) for g in group]
    mean, se = mean_se(diffs)
    return best, mean, se


def _verdicts(cells: list[dict[str, Any]], agent: str) -> list[tuple[str, bool]]:
    """Per setting: a line, and whether the agent's mean fine-tuned test accuracy is >= every
    baseline's and strictly above uniform's."""
    groups = _by_setting(cells)
    out = []
    for (model, scheme, hw, b), group in sorted(groups.items()):
        mean = {
            m: statistics.fmean(g["methods"][m]["test"] for g in group) for m in group[0]["methods"]
        }
        ge_all = all(mean[agent] >= mean[m] - 1e-12 for m in BASELINES if m in mean)
        gt_uni = mean[agent] > mean.get("uniform", float("-inf")) + 1e-12
        best, diff, se = paired_difference(group, agent)
        line = (
            f"{model:16s} {scheme:12s} {hw:15s} {b:5.2f}  {agent} test {100 * mean[agent]:6.2f}; "
            f"- best baseline ({best}) {diff:+.2f} +- {se:.2f} (se); >= every baseline: "
            f"{'yes' if ge_all else 'NO'}; > uniform ({100 * mean['uniform']:6.2f}): "
            f"{'yes' if gt_uni else 'NO'}"
        ) + _setting_notes(group)
        out.append((line, ge_all and gt_uni))
    return out


def _wins(cells: list[dict[str, Any]], agent: str, field: str) -> tuple[int, int]:
    groups = _by_setting(cells)
    wins = 0
    for group in groups.values():
        mean = {
            m: statistics.fmean(g["methods"][m][field] for g in group) for m in group[0]["methods"]
        }
        if mean[agent] >= max(mean[b] for b in BASELINES) - 1e-12:
            wins += 1
    return wins, len(groups)


def league(
    cells: list[dict[str, Any]],
    methods: list[str],
    agent: str,
    *,
    draws: int = 4000,
    seed: int = 0,
) -> str:
    """Every method against all the others over the settings of ``cells``, on the mean
    fine-tuned test accuracy over each setting's seeds.

    Three views: per method, the settings where it is >= every other method (so whether
    any baseline would meet the bar the agent is held to); ``agent`` against each baseline
    paired per setting (mean difference +- standard error over settings; settings won,
    tied, lost); and the count a search tied with the others would reach by chance: the
    method labels of the searches (``uniform`` aside, it is one fixed policy) permuted
    within each seed of each setting ``draws`` times, counting the settings where the
    ``agent`` label is >= every baseline and > uniform.
    """
    import numpy as np

    groups = [g for _, g in sorted(_by_setting(cells).items())]
    present = [m for m in methods if all(m in c["methods"] for g in groups for c in g)]
    if agent not in present or len(groups) < 2:
        return ""
    n = len(groups)
    tests = [np.array([[c["methods"][m]["test"] for m in present] for c in g]) for g in groups]
    means = np.array([t.mean(axis=0) for t in tests])  # settings x methods, fractions
    lines = [f"\n## league over {n} settings (mean test accuracy over each setting's seeds)"]
    for j, m in enumerate(present):
        others = np.delete(means, j, axis=1)
        top = int(np.sum(means[:, j] >= others.max(axis=1) - 1e-12))
        mean = 100 * means[:, j].mean()
        lines.append(f"{m:8s} >= every other method in {top:2d}/{n}; mean test {mean:.2f}")
    a = present.index(agent)
    for b in (m for m in BASELINES if m in present):
        d = 100 * (means[:, a] - means[:, present.index(b)])
        won, lost = int(np.sum(d > 1e-9)), int(np.sum(d < -1e-9))
        mean, se = mean_se(d)
        lines.append(
            f"{agent} - {b:8s} {mean:+.2f} +- {se:.2f} (se over settings); settings won "
            f"{won}, tied {n - won - lost}, lost {lost}"
        )
    searches = [j for j, m in enumerate(present) if m != "uniform"]
    rivals = [j for j, m in enumerate(present) if m in BASELINES]
    uni = present.index("uniform") if "uniform" in present else None

    def bar(mean: np.ndarray) -> np.ndarray:  # (..., methods) -> the agent meets the bar
        ok = np.all(mean[..., [a]] >= mean[..., rivals] - 1e-12, axis=-1)
        return ok & (mean[..., a] > mean[..., uni] + 1e-12) if uni is not None else ok

    observed = int(sum(bar(m) for m in means))
    rng = np.random.default_rng(seed)
    counts = np.zeros(draws, dtype=int)
    for t in tests:
        sample = np.repeat(t[None], draws, axis=0)  # draws x seeds x methods
        sample[..., searches] = rng.permuted(sample[..., searches], axis=2)
        counts += bar(sample.mean(axis=1))
    p = float(np.mean(counts >= observed))
    lines.append(
        f"chance: with the searches' labels permuted within each seed ({draws} draws), "
        f"{agent} would be >= every baseline and > uniform in {counts.mean():.1f}/{n} "
        f"settings on average; observed {observed}/{n}, P(>= {observed}) = {p:.3f}"
    )
    # Per setting, how far the agent's mean is below the best baseline (<= 0: at the bar);
    # the majority-th smallest is the lift that would put a majority at the bar.
    short = np.sort(100 * (means[:, rivals].max(axis=1) - means[:, a]))
    need = max(0.0, float(short[n // 2]))
    lines.append(
        f"distance to a majority ({n // 2 + 1}/{n}): {agent} {need:+.2f} points in every "
        "setting's mean would put it >= every baseline in a majority"
    )
    return "\n".join(lines)


def _setting(model: str, scheme: str, hw: str) -> dict[str, Any]:
    return {
        **PAIR_SETTINGS.get((scheme, hw), {}),
        **MODEL_PAIR_SETTINGS.get((model, scheme, hw), {}),
    }


def against(
    cells: list[dict[str, Any]],
    other: list[dict[str, Any]],
    methods: list[str],
    default: str,
    *,
    names: tuple[str, str] | None = None,
) -> str:
    """Two runs of the same settings side by side (e.g. two search proxies), paired on
    the seeds both have: per setting each method's test accuracy, whether ``default`` is
    at least every baseline's, and the counts and means."""

    def label(cs: list[dict[str, Any]]) -> str:
        def one(proxy: Any) -> str:  # e.g. "holdout" or "holdout int8"
            name, params = (list(proxy) + [{}])[:2] if isinstance(proxy, list) else (proxy, {})
            precision = params.get("precision") if isinstance(params, dict) else None
            return f"{name} {precision}" if precision else str(name)

        return "/".join(sorted({one(c.get("proxy", ["?"])) for c in cs}))

    def keyed(cs: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
        return {(c["model"], c["scheme"], c["hardware"], c["budget"], c["seed"]): c for c in cs}

    a, b = keyed(cells), keyed(other)
    shared = sorted(set(a) & set(b))
    names = names or (label(cells), label(other))
    if names[0] == names[1]:  # e.g. two runs of one proxy: keep their counts apart
        names = (f"{names[0]} #1", f"{names[1]} #2")
    head = f"{'model':<12} {'scheme':<12} {'budget':>6} {'seed':>4}  {'proxy':<15}"
    lines = [head + "".join(f"{m:>8}" for m in methods) + f"  {default} >= all"]
    wins = dict.fromkeys(names, 0)
    means: dict[str, dict[str, list[float]]] = {n: {m: [] for m in methods} for n in names}
    for key in shared:
        for name, cell in zip(names, (a[key], b[key]), strict=True):
            test = {m: 100 * cell["methods"][m]["test"] for m in methods}
            for m in methods:
                means[name][m].append(test[m])
            ok = all(test[default] >= test[m] - 1e-9 for m in methods if m != default)
            wins[name] += ok
            lines.append(
                f"{key[0]:<12} {key[1]:<12} {key[3]:>6.2f} {key[4]:>4}  {name:<15}"
                + "".join(f"{test[m]:8.2f}" for m in methods)
                + f"  {'yes' if ok else 'NO'}"
            )
    lines.append("")
    for name in names:
        mean = ", ".join(f"{m} {statistics.fmean(v):.2f}" for m, v in means[name].items() if v)
        lines.append(
            f"{name:<15} {default} >= every baseline in {wins[name]}/{len(shared)}; "
            f"mean test: {mean}"
        )
    if len(shared) >= 2:
        # Paired on setting and seed: how far the first run's test accuracy moved from the
        # second's, against the noise of one run (the spread of a setting over its seeds).
        diffs = {m: [x - y for x, y in zip(*(means[n][m] for n in names), strict=True)]
                 for m in methods}  # fmt: skip
        lines.append(f"paired difference {names[0]} - {names[1]} (points, mean +- s.e.):")
        lines.append(
            "  "
            + ", ".join("{} {:+.2f} +- {:.2f}".format(m, *mean_se(d)) for m, d in diffs.items())
        )
        spread = []
        for key in {k[:4] for k in shared}:
            for m in methods:
                seeds = [100 * b[k]["methods"][m]["test"] for k in shared if k[:4] == key]
                if len(seeds) >= 2 and statistics.stdev(seeds) > 0:  # seeded methods only
                    spread.append(statistics.stdev(seeds))
        if spread:
            lines.append(
                f"  seed-to-seed s.d. of a seeded method on one setting ({names[1]}): "
                f"{statistics.fmean(spread):.2f} points on average"
            )
    return "\n".join(lines)


def report(cells: list[dict[str, Any]], aware: list[dict[str, Any]], methods: list[str]) -> str:
    """The benchmark's tables, per-agent verdicts and awareness summary as text."""
    lines = [_tables(cells, methods)] if cells else []
    agents = [m for m in methods if m not in BASELINES]
    for track, models in TRACKS.items():
        track_cells = [c for c in cells if c["model"] in models]
        for a in agents:
            mine = [c for c in track_cells if a in c["methods"]]
            if not mine:
                continue
            w, n = _wins(mine, a, "holdout")
            wt, _ = _wins(mine, a, "test")
            verdicts = _verdicts(mine, a)
            met = sum(ok for _, ok in verdicts)
            lines.append(
                f"\n{a} on the {track} track: best or tied on holdout in {w}/{n} settings, on "
                f"test in {wt}/{n}; test >= every baseline and > uniform in {met}/{n}"
            )
            lines.extend(line for line, _ in verdicts)
            lines.append(league(mine, methods, a))
    if aware:
        agent, eps = aware[0]["agent"], aware[0]["episodes"]
        models = ", ".join(sorted({r["model"] for r in aware}))
        lines.append(
            f"\n## hardware awareness ({agent}, {models}, {eps} episodes per "
            "search), mean +- std over seeds: a flops-budgeted policy costed on the target "
            "vs searches on the target at its target cost c_f and below, c_f - f * (c_f - floor) "
            f"for f in {AWARE_STEPS}"
        )
        by: dict[tuple, list[dict]] = {}
        for r in aware:
            by.setdefault((r["scheme"], r["hardware"], r["budget"]), []).append(r)
        for (scheme, hw, b), rs in sorted(by.items()):
            hp = rs[0]["hardware_params"]
            reached = sum(r["reached_flops_accuracy"] for r in rs)

            def col(key: str, pct: bool = False, rs: list[dict] = rs) -> str:
                return _ms([r[key] for r in rs], "pct" if pct else "ratio")

            lines.append(
                f"{scheme:9s} {hw}{hp or ''} flops budget {b:.2f} (metric {rs[0]['metric']}, "
                f"target floor {rs[0]['target_dense_floor']:.3f}):\n"
                f"  flops policy: flops cost {col('flops_policy_flops_cost')}, target cost "
                f"{col('flops_policy_target_cost')}, holdout {col('flops_policy_holdout', True)}\n"
                f"  equal target cost: target-search holdout {col('target_policy_holdout', True)} "
                f"at target cost {col('target_policy_target_cost')}; gain {col('gain', True)} pts\n"
                f"  equal accuracy: least target cost of a target search's best policy with "
                f"holdout >= the flops policy's {col('target_cost_at_flops_accuracy')} (reached in "
                f"{reached}/{len(rs)} seeds); saving {col('cost_saving')} of dense"
            )
    return "\n".join(lines)


def combine(
    parts: list[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The cells and awareness rows of several results files read as one run.

    A cell of a later file replaces the cell of the same setting and seed from an earlier
    one (e.g. the channel settings re-run with their own search proxy); each replacement
    is returned as a line naming both files, so a report says where its cells came from.
    """
    doc: dict[str, list[dict[str, Any]]] = {"cells": [], "awareness": []}
    source: dict[tuple[str, tuple], str] = {}
    notes: list[str] = []
    for name, part in parts:
        for key in doc:
            incoming = part.get(key, [])
            new = {_cell_key(c) for c in incoming}
            gone = [c for c in doc[key] if _cell_key(c) in new]
            if gone:
                was = sorted({source[(key, _cell_key(c))] for c in gone})
                notes.append(f"{len(gone)} {key} of {', '.join(was)} replaced by {name}'s")
            doc[key] = [c for c in doc[key] if _cell_key(c) not in new] + incoming
            source.update({(key, _cell_key(c)): name for c in incoming})
    return doc, notes


def _cell_key(c: dict[str, Any]) -> tuple:
    """What identifies a cell (or awareness row) across runs of this script."""
    return (c["model"], c["scheme"], c["hardware"], c["budget"], c["seed"])


def _episodes_arg(text: str) -> tuple[str, int]:
    label, _, n = text.partition("=")
    if label not in WORKLOADS or not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(
            f"expected WORKLOAD=N with WORKLOAD one of {', '.join(WORKLOADS)} and N >= 1, "
            f"got {text!r}"
        )
    return label, int(n)


def _parser() -> argparse.ArgumentParser:
    """The benchmark's command line."""
    from agents.app.search import SearchConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized: one pair, budget, seed")
    p.add_argument(
        "--tracks",
        nargs="+",
        choices=list(TRACKS),
        default=["fashion"],
        help="workload tracks (default: the main Fashion-MNIST track)",
    )
    p.add_argument(
        "--agents",
        nargs="+",
        default=[SearchConfig().agent],
        help="RL agents to compare (default: the product's default agent)",
    )
    p.add_argument(
        "--episodes",
        type=_episodes_arg,
        nargs="+",
        default=[],
        metavar="WORKLOAD=N",
        help=f"episodes per search, overriding {EPISODES}",
    )
    p.add_argument("--aware-episodes", type=int, help="episodes per awareness search")
    p.add_argument("--budgets", type=float, nargs="+", help="override every setting's budgets")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--finetune", type=int, help=f"fine-tune steps of every best policy (default {FINETUNE})"
    )
    p.add_argument(
        "--finetune-seeds",
        type=int,
        default=2,
        help="fine-tunes (seeds) per best policy; its test accuracy is their mean",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--proxy",
        help="search proxy of every cell (e.g. holdout-energy; default: each model's, "
        "SEARCH_PROXY); give it its own --out",
    )
    p.add_argument(
        "--proxy-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --proxy: one of its parameters (e.g. steps=5 for finetune); repeatable",
    )
    p.add_argument(
        "--shortlist",
        type=int,
        default=0,
        metavar="K",
        help="also end every search as SearchConfig.shortlist K does (re-score its K best "
        "policies with --shortlist-proxy) and fine-tune that pick too (report: --pick)",
    )
    p.add_argument("--shortlist-proxy", default="finetune", help="proxy of --shortlist")
    p.add_argument(
        "--shortlist-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of --shortlist-proxy (e.g. steps=50); repeatable",
    )
    p.add_argument(
        "--pick",
        choices=("search", "shortlist"),
        default="search",
        help="with --report: each method's figures are its search's best (default) or its "
        "shortlist's pick (runs made with --shortlist)",
    )
    p.add_argument("--no-aware", action="store_true")
    p.add_argument(
        "--aware-only",
        action="store_true",
        help="run only the hardware-awareness check, not the search-quality cells",
    )
    p.add_argument("--pairs", nargs="+", help="only these SCHEME:HARDWARE pairs")
    p.add_argument("--models", nargs="+", choices=list(WORKLOADS), help="only these workloads")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--report",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="print the tables of results files written by this script (their cells "
        "together: e.g. the fashion-cnn and resnet20 parts of the main track; a later "
        "file's cell replaces an earlier one's of the same setting and seed), run nothing",
    )
    p.add_argument(
        "--against",
        type=Path,
        metavar="JSON",
        help="with --report: pair its cells with this file's (e.g. another search proxy)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the cells of --out for settings this run does not repeat",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the cells already in --out and keep them (continue an interrupted run)",
    )
    return p


def _checked_overrides(
    p: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The search and shortlist proxies' parameters, checked as a search checks them
    (``p.error`` names the first bad one, before any cell runs)."""
    from agents.app.search import SearchConfig
    from agents.checks import parse_overrides

    try:  # values read as the CLI's --hw-param / --hp: 5 -> int, 1e-3 -> float
        proxy_params = parse_overrides(args.proxy_param, "--proxy-param")
    except ValueError as exc:
        p.error(str(exc))
    if proxy_params and args.proxy is None:
        p.error("--proxy-param needs --proxy (the proxy it is a parameter of)")
    if args.proxy is not None:
        from envs import list_proxies

        if args.proxy not in list_proxies():
            p.error(f"--proxy {args.proxy!r}; valid: {', '.join(list_proxies())}")
        try:  # the search's own check: unknown keys name the valid ones
            SearchConfig(proxy=args.proxy, proxy_params=proxy_params)
        except (TypeError, ValueError) as exc:
            p.error(f"--proxy-param: {exc}")
    try:
        shortlist_params = parse_overrides(args.shortlist_param, "--shortlist-param")
        SearchConfig(
            shortlist=args.shortlist,
            shortlist_proxy=args.shortlist_proxy,
            shortlist_params=shortlist_params,
        )
    except (KeyError, TypeError, ValueError) as exc:
        p.error(f"--shortlist: {exc.args[0] if exc.args else exc}")
    if args.aware_only and (args.no_aware or args.quick):
        p.error("--aware-only runs only the awareness check, which --no-aware and --quick skip")
    if args.finetune_seeds < 1:
        p.error(f"--finetune-seeds must be >= 1, got {args.finetune_seeds}")
    return proxy_params, shortlist_params


def _print_report(p: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--report``: the tables of results files (cells of several files together), run
    nothing."""
    parts = []
    for path in args.report:
        if not path.is_file():
            p.error(f"--report: no such file {str(path)!r}")
        parts.append((str(path), json.loads(path.read_text())))
    doc, replaced = combine(parts)
    for line in replaced:
        print(line)
    methods = list(dict.fromkeys(m for c in doc["cells"] for m in c["methods"]))
    try:
        cells = picked(doc["cells"], args.pick)
    except ValueError as exc:
        p.error(f"--pick {args.pick}: {exc}")
    if args.against is not None:
        if not args.against.is_file():
            p.error(f"--against: no such file {str(args.against)!r}")
        other = json.loads(args.against.read_text()).get("cells", [])
        names = None
        if args.pick != "search":
            proxies = "/".join(sorted({str(c.get("proxy", ["?"])[0]) for c in cells}))
            names = (f"{proxies}+{args.pick}", f"{proxies}")
        print(against(cells, other, methods, methods[-1], names=names))
        return 0
    print(report(cells, doc.get("awareness", []), methods))
    return 0


def grid(
    args: argparse.Namespace,
    proxy_params: dict[str, Any],
    shortlist_params: dict[str, Any],
    notes: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str], dict[str, int], list[int]]:
    """The search-quality cells and the awareness cells ``args`` ask for, with the methods,
    episodes per workload and seeds they use; pairs that cannot run go to ``notes``."""
    from agents.base import AGENTS

    for name in args.agents:
        AGENTS.check(name)
    methods = [*BASELINES, *args.agents]
    episodes = {**EPISODES, **dict(args.episodes)}
    models = [m for t in args.tracks for m in TRACKS[t]]
    if args.models:
        models = [m for m in models if m in args.models]
    pairs = [(m, s, h) for m in models for s, h in MODEL_PAIRS.get(m, PAIRS)]
    if args.pairs:
        pairs = [p for p in pairs if f"{p[1]}:{p[2]}" in args.pairs]
    seeds = list(range(args.seeds))
    if args.quick:  # CI-sized, on the bundled digits whatever the tracks
        pairs, seeds = [("digits-cnn", *PAIRS[0])], [0]
        episodes["digits-cnn"] = min(episodes["digits-cnn"], 30)
        args.no_aware = True
    cells = []
    for model, scheme, hw in pairs:
        why = _available(scheme, hw)
        if why:
            notes.append(f"skipped {model} {scheme} x {hw}: {why}")
            continue
        setting = _setting(model, scheme, hw)
        metric = setting.get("metric", "latency")
        budgets = args.budgets or setting.get("budgets", DEFAULT_BUDGETS)
        if args.quick:
            budgets = budgets[-1:]
        for b in budgets:
            for s in seeds:
                cells.append(
                    {
                        "model": model,
                        "scheme": scheme,
                        "hardware": hw,
                        "budget": b,
                        "metric": metric,
                        "hardware_params": setting.get("hardware_params", {}),
                        "scheme_params": setting.get("scheme_params", {}),
                        "seed": s,
                        "episodes": episodes[model],
                        "finetune": args.finetune or FINETUNE.get(model, FINETUNE["default"]),
                        "finetune_seeds": args.finetune_seeds,
                        "methods": methods,
                        **({"search_proxy": [args.proxy, proxy_params]} if args.proxy else {}),
                        **(
                            {"shortlist": [args.shortlist, args.shortlist_proxy, shortlist_params]}
                            if args.shortlist
                            else {}
                        ),
                    }
                )
    if args.aware_only:
        cells = []
    aware = []
    aware_models = [m for m in models if m in AWARE_SETTINGS]
    if not args.no_aware:
        for model in aware_models:
            for (scheme, hw), setting in AWARE_SETTINGS[model].items():
                if args.pairs and f"{scheme}:{hw}" not in args.pairs:
                    continue
                if _available(scheme, hw) or _available(scheme, "flops"):
                    notes.append(f"skipped awareness {scheme} x {hw}: missing")
                    continue
                # The pair's own settings (metric, scheme and hardware parameters), with
                # the awareness check's flops budgets.
                pair = {**_setting(model, scheme, hw), **setting}
                for b in setting["budgets"]:
                    for s in seeds:
                        aware.append(
                            {
                                "model": model,
                                "scheme": scheme,
                                "hardware": hw,
                                "hardware_params": pair.get("hardware_params", {}),
                                "scheme_params": pair.get("scheme_params", {}),
                                "budget": b,
                                "metric": pair.get("metric", "latency"),
                                "seed": s,
                                "episodes": args.aware_episodes or episodes[model],
                                "agent": args.agents[0],
                                **(
                                    {"search_proxy": [args.proxy, proxy_params]}
                                    if args.proxy
                                    else {}
                                ),
                            }
                        )
    return cells, aware, methods, episodes, seeds


def run_grid(
    cells: list[dict[str, Any]],
    aware: list[dict[str, Any]],
    *,
    out: Path,
    old: dict[str, Any],
    config: dict[str, Any],
    workers: int,
    notes: list[str],
) -> tuple[dict[str, Any], int, float]:
    """Run ``cells`` and ``aware`` in ``workers`` processes, writing ``out`` after each
    (merged with ``old``'s other cells); returns the document, the finished count and the
    wall time."""
    t0 = time.perf_counter()
    # Train and cache each workload once here, not concurrently in every worker.
    from envs import get_workload

    for label in sorted({c["model"] for c in [*cells, *aware]}):
        arch, data = WORKLOADS[label]
        get_workload(arch, data=data)
    print(f"workloads ready in {time.perf_counter() - t0:.0f} s", flush=True)
    results: list[dict[str, Any]] = []
    aware_results: list[dict[str, Any]] = []

    def write(wall: float) -> dict[str, Any]:
        """Write everything finished so far (merged with --out's other cells), atomically:
        an interrupted run keeps every finished cell, and ``--resume`` continues it."""
        doc: dict[str, Any] = {"config": config, "wall_seconds": wall}
        all_cells, all_aware = list(results), list(aware_results)
        if old:
            new_keys = {_cell_key(c) for c in results}
            new_aware = {_cell_key(c) for c in aware_results}
            all_cells = [c for c in old.get("cells", []) if _cell_key(c) not in new_keys]
            all_cells += results
            all_aware = [c for c in old.get("awareness", []) if _cell_key(c) not in new_aware]
            all_aware += aware_results
            doc["earlier_runs"] = [
                *old.get("earlier_runs", []),
                {k: old.get(k) for k in ("config", "wall_seconds")},
            ]
        doc.update({"cells": all_cells, "awareness": all_aware, "notes": notes})
        write_json(out, doc)
        return doc

    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Slowest first (resnet20 cells), so the workers finish together; seed by seed, so
        # an interrupted run has covered every setting before it repeats any.
        order = sorted(cells, key=lambda c: (not c["model"].startswith("resnet20"), c["seed"]))
        futures = {pool.submit(run_cell, c): ("cell", c) for c in order}
        futures.update({pool.submit(run_aware, c): ("aware", c) for c in aware})
        for fut in as_completed(futures):
            kind, c = futures[fut]
            tag = f"{c['model']} {c['scheme']} x {c['hardware']} b={c['budget']} seed={c['seed']}"
            try:
                res = fut.result()
            except Exception as exc:  # one failing pair must not lose the others
                notes.append(f"failed {kind} {tag}: {exc!r}")
                traceback.print_exc()
                continue
            (results if kind == "cell" else aware_results).append(res)
            write(time.perf_counter() - t0)
            print(f"[{time.perf_counter() - t0:6.0f}s] done {kind} {tag}", flush=True)
    wall = time.perf_counter() - t0
    return write(wall), len(results) + len(aware_results), wall


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit status."""
    p = _parser()
    args = p.parse_args(argv)
    proxy_params, shortlist_params = _checked_overrides(p, args)
    if args.report is not None:
        return _print_report(p, args)
    warnings.filterwarnings("ignore")
    from agents.app.search import scheme_proxies

    notes: list[str] = []
    cells, aware, methods, episodes, seeds = grid(args, proxy_params, shortlist_params, notes)
    keep_old = (args.merge or args.resume) and args.out.exists()
    old = json.loads(args.out.read_text()) if keep_old else {}
    if args.resume:  # cells already in --out are not run again
        done = {_cell_key(c) for c in old.get("cells", [])}
        done_aware = {_cell_key(c) for c in old.get("awareness", [])}
        skipped = len(cells) + len(aware)
        cells = [c for c in cells if _cell_key(c) not in done]
        aware = [c for c in aware if _cell_key(c) not in done_aware]
        notes.append(f"resumed: {skipped - len(cells) - len(aware)} cells already in {args.out}")
    config = {
        "tracks": args.tracks,
        "episodes": episodes,
        "aware_episodes": args.aware_episodes,
        "workloads": WORKLOADS,
        "aware_steps": list(AWARE_STEPS),
        "budgets": args.budgets,
        "seeds": seeds,
        "finetune_steps": args.finetune or FINETUNE,
        "finetune_seeds": args.finetune_seeds,
        "methods": methods,
        "search_proxy": SEARCH_PROXY,
        "scheme_proxies": scheme_proxies(),
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "command": " ".join(("python -m bench.search_quality", *sys.argv[1:])),
    }
    doc, finished, wall = run_grid(
        cells, aware, out=args.out, old=old, config=config, workers=args.workers, notes=notes
    )
    print(
        f"\nepisodes per search: {episodes}; seeds {len(seeds)}; fine-tune steps "
        f"{args.finetune or FINETUNE} x {args.finetune_seeds} seeds; search proxies "
        f"{SEARCH_PROXY}; wall {wall:.0f} s"
    )
    print(report(doc["cells"], doc["awareness"], methods))
    for n in notes:
        print("note:", n)
    print(f"wrote {args.out}")
    return 0 if finished else 1


if __name__ == "__main__":
    raise SystemExit(main())
