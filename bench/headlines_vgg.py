"""The seeds' headlines on fashion-vgg with the full recipe: compression after recovery.

Every pruned network here is *recovered* the same way (``envs.workloads.recovery``: masked
training, cosine schedule, the workload's flips and shifts, ``--epochs`` passes, default
3; IKR ``LONG``, PCNN four times that) before its test accuracy counts; the dense model
fine-tuned for the same epochs is the control. PCNN, IKR and Kang keep the first convolution dense.
Each claim is one fixed-budget search run through the product's own API
(``agents.run_search`` with ``finetune_epochs``): it recovers the searched and the uniform
policy at the same budget, so both rows come from one run. Kang's claim compares uniform
balanced and unstructured policies at equal density.

- pcnn: pattern on accel-kang-16, the memory budget at which the weights compress 8x
  (SPM index bits counted, ``budget_at_compression``), 32 epochs of recovery distilled
  from the dense model: >= 8x weights at <= 0.5 points. At 8x the budget leaves one weight
  per kernel in nearly every layer, so the recovery decides the claim: the searched
  policy's loss against the dense control of the same length was 1.24 points at 8 epochs
  (not distilled), 0.70 at 16 and 0.44 at 32 (distilled); peak lr 0.01 and masks reached
  gradually did not help (8 epochs, an earlier policy).
- ikr: ikr on accel-kang-16, the memory budget at which 8.8x fewer weights are kept,
  recovery distilled from the dense model: >= 8x weights and >= 6x MACs at < 1 point.
  At 8.8x every policy within the budget also keeps >= 6.4x fewer MACs (the budget
  leaves no room to keep the MAC-heavy early layers dense; at 8x the search did, 5.0x).
- liang: crossbar on reram-128, crossbar budget 0.4: >= 60% fewer crossbars at <= 1 point.
- kang: uniform balanced vs unstructured on accel-kang-16 at density 0.25: >= 2x fewer
  cycles, within 0.3 points of unstructured.
- radu: channel on gpu-jetson-tx2 at batch 32, latency budget 0.66: >= 1.5x faster than
  dense at <= 1 point.

Rows go to ``bench/results/headlines_fashion_vgg.json`` as ``{"rows": [...]}``, each written
as soon as it is measured: an interrupted run resumes where it stopped (rows already there
are kept; ``--redo`` measures them again). Within a claim nothing finished is lost either: a
claim stopped by Ctrl-C or SIGTERM leaves its search run under ``pending`` in the file, and
the next start resumes that run (episodes replayed, each recovery from its last finished
epoch); the dense control keeps its finished epochs the same way. ``--report`` prints the
table of the file.

    python -m bench.headlines_vgg                     # every claim (hours on 2 cores)
    python -m bench.headlines_vgg --claims pcnn kang  # some claims
    python -m bench.headlines_vgg --report
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import RowsFile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "headlines_fashion_vgg.json"
#: The workload the claims are measured on (``--model``/``--data`` change it for smoke tests).
WORKLOAD = {"model": "fashion-vgg", "data": "fashion-mnist"}


@dataclass(frozen=True)
class Claim:
    """One paper's claim: the setting its rows are measured in and the target they meet."""

    name: str
    scheme: str
    hardware: str
    metric: str
    target: str
    budget: float | None = None
    """Fixed budget; None: the cost at which ``weight_compression`` is ``compression``."""
    compression: float | None = None
    index_bits: bool = False
    """Weight compression counts the index bits (PCNN's SPM) or the kept weights only."""
    keep_dense: tuple[str, ...] = ()
    epochs: int | None = None
    """Recovery epochs (None: ``--epochs``); the dense control is fine-tuned as long."""
    distill: bool = False
    """Recovery distilled from the dense model (the control is fine-tuned without)."""
    hardware_params: dict[str, Any] = field(default_factory=dict)
    meets: Callable[[dict[str, Any]], bool] = lambda row: False


#: The papers keep the input convolution dense (16 kernels of 9 weights that see every
#: pixel; one weight per kernel left there costs 17 points before recovery).
FIRST = ("first",)
#: Recovery epochs of the 1-of-9-weights claims (PCNN, IKR), as long as the papers retrain.
LONG = 8

CLAIMS: dict[str, Claim] = {
    c.name: c
    for c in (
        Claim(
            "pcnn", "pattern", "accel-kang-16", "memory", ">= 8x weights at <= 0.5 points",
            compression=8.0, index_bits=True, keep_dense=FIRST, epochs=4 * LONG, distill=True,
            meets=lambda r: r["weight_compression"] >= 8 and r["loss_points"] <= 0.5,
        ),
        Claim(
            "ikr", "ikr", "accel-kang-16", "memory", ">= 8x weights and >= 6x MACs at < 1 point",
            compression=8.8, keep_dense=FIRST, epochs=LONG, distill=True,
            meets=lambda r: r["weight_compression"] >= 8
            and r["mac_compression"] >= 6
            and r["loss_points"] < 1,
        ),
        Claim(
            "liang", "crossbar", "reram-128", "resources",
            ">= 60% fewer crossbars (speedup >= 2.5) at <= 1 point", budget=0.4,
            meets=lambda r: r["speedup"] >= 2.5 and r["loss_points"] <= 1,
        ),
        Claim(
            "kang", "balanced", "accel-kang-16", "cycles",
            "balanced >= 2x fewer cycles than unstructured at equal density, within 0.3 points",
            keep_dense=FIRST,
            meets=lambda r: r["speedup"] >= 2 and r["loss_points"] <= 0.3,
        ),
        Claim(
            "radu", "channel", "gpu-jetson-tx2", "latency",
            ">= 1.5x faster than dense at <= 1 point", budget=0.66,
            hardware_params={"batch": 32},
            meets=lambda r: r["speedup"] >= 1.5 and r["loss_points"] <= 1,
        ),
    )
}  # fmt: skip

#: Density of Kang's equal-density comparison (the released models' 4 of 16).
KANG_DENSITY = 0.25


def _task(claim: Claim, scheme: str | None = None):
    from envs import make_task

    return make_task(_spec(claim, scheme))


def _spec(claim: Claim, scheme: str | None = None):
    from envs import TaskSpec

    return TaskSpec(
        model=WORKLOAD["model"],
        data=WORKLOAD["data"],
        scheme=scheme or claim.scheme,
        hardware=claim.hardware,
        metric=claim.metric,
        hardware_params=claim.hardware_params,
        keep_dense=claim.keep_dense,
    )


def _recovery_lr(task) -> float:
    from agents.app.finalize import recovery_recipe

    return recovery_recipe(task).lr


def kept_dense(task, claim: Claim) -> list[str]:
    """Names of the layers ``claim`` keeps dense in ``task``."""
    from envs.task import resolve_keep_dense

    names = [layer.name for layer in task.layers]
    return sorted(resolve_keep_dense(claim.keep_dense, names, task.workload.name))


def budget_at_compression(task, claim: Claim) -> float:
    """The cost ratio at which the claim's ``weight_compression`` is ``claim.compression``.

    Cost and the inverse compression of the uniform policies at the two least levels fix
    the affine map between them (both are sums over the same layers); the budget is its
    value at the target, so any policy within it compresses about as much or more (the
    rows record the exact figure).
    """
    unit = "storage" if claim.index_bits else "parameter"
    kept = kept_dense(task, claim)
    points = []
    for level in (0, 1):
        choice = [level] * len(task.decisions)
        points.append(
            (1 / compression(task, choice, kept)[f"{unit}_compression"], task.cost_ratio(choice))
        )
    (x0, y0), (x1, y1) = points
    slope = (y1 - y0) / (x1 - x0)
    return y0 + slope * (1 / claim.compression - x0)


def _uniform_at(task, density: float) -> list[int]:
    return task.choice_for_densities({d.name: density for d in task.decisions})


def compression(task, choice: list[int], kept_dense: Sequence[str] = ()) -> dict[str, float]:
    """Compression of the weights of the decisions' layers and of ``kept_dense``:
    ``parameter_compression`` (dense weights over kept weights) and
    ``storage_compression`` (dense 32-bit weights over the kept 32-bit values plus the
    scheme's index bits, ``pruning.formats``); MAC compression (the ``flops`` model's dense
    MACs over the policy's)."""
    import torch

    from envs import build_task
    from hwmodels import get_hardware
    from pruning.formats import encode

    params = dict(task.workload.model.named_parameters())
    masks = task.masks(choice)
    values = index = dense = 0
    for layer in [m for d in task.decisions for m in d.layers] + [
        m for m in task.layers if m.name in kept_dense
    ]:
        weight = params[f"{layer.name}.weight"].detach()
        mask = masks.get(f"{layer.name}.weight")
        if mask is None:
            mask = torch.ones_like(weight, dtype=torch.bool)
        enc = encode(task.scheme, weight, mask, layer)
        values += enc.value_count
        index += enc.metadata_bits
        dense += weight.numel()
    flops = build_task(
        task.workload, task.scheme, get_hardware("flops"), metric="latency", keep_dense=kept_dense
    )
    stored = 32 * values + index
    return {
        "parameter_compression": dense / values,
        "storage_compression": 32 * dense / stored,
        "index_share": index / stored,
        "mac_compression": 1 / flops.cost_ratio(choice),
        "density": task.overall_density(choice),
    }


def _row(
    claim: Claim,
    task,
    choice,
    *,
    policy: str,
    test: float,
    before: float,
    ref,
    epochs,
    speedup=None,
):
    """A row of the results; ``speedup`` defaults to dense cost over the policy's."""
    ratio = task.cost_ratio(choice)
    sizes = compression(task, choice, kept_dense(task, claim))
    unit = "storage" if claim.index_bits else "parameter"
    row = {
        "claim": claim.name,
        "scheme": task.scheme.name,
        "hardware": claim.hardware,
        "metric": task.metric,
        "policy": policy,
        "weight_compression": sizes[f"{unit}_compression"],
        "weight_unit": "values + index bits" if claim.index_bits else "weights kept",
        **sizes,
        "cost_ratio": ratio,
        "speedup": 1 / ratio if speedup is None else speedup,
        "test": test,
        "test_before_recovery": before,
        "reference": ref["name"],
        "reference_test": ref["test"],
        "loss_points": 100 * (ref["test"] - test),
        "epochs": epochs,
        "recovery_lr": _recovery_lr(task),
        "distill": claim.distill,
        "keep_dense": list(claim.keep_dense),
        "choice": list(choice),
    }
    row["meets_target"] = bool(claim.meets(row))
    return row


def checkpoint_sha256() -> str | None:
    """sha256 of the committed checkpoint the rows start from (None: a smoke workload
    trained here)."""
    from envs.workloads.builtin import CHECKPOINT_DIR, shipped_record

    if not (CHECKPOINT_DIR / f"{WORKLOAD['model']}.json").is_file():
        return None
    return shipped_record(WORKLOAD["model"])["sha256"]


def dense_control(res: RowsFile, epochs: int) -> dict[str, Any]:
    """The dense model fine-tuned for ``epochs`` (computed once per checkpoint and length;
    ``dense`` holds the control of ``--epochs``, ``controls`` every length's)."""
    from agents.app.finalize import recovered_model, recovery_recipe
    from tracking import state_dir

    controls = res.doc.setdefault("controls", {})
    if res.doc.get("dense") and res.doc["dense"].get("epochs") == epochs:
        controls.setdefault(str(epochs), res.doc["dense"])
    stored = controls.get(str(epochs))
    if stored and res.doc.get("checkpoint") == checkpoint_sha256():
        return stored
    task = _task(CLAIMS["pcnn"])
    t0 = time.perf_counter()
    # Its epochs are kept as they finish: an interrupted control goes on from the last one.
    states = state_dir() / "bench-headlines-vgg"
    rec = recovered_model(
        task, list(task.dense_choice), recovery_recipe(task, epochs=epochs), states=states
    )
    shutil.rmtree(states, ignore_errors=True)
    controls[str(epochs)] = {
        "epochs": epochs,
        "recovery_lr": _recovery_lr(task),
        "test": rec.after,
        "checkpoint_test": rec.before,
        "seconds": time.perf_counter() - t0,
    }
    res.save()
    return controls[str(epochs)]


def searched_claim(
    claim: Claim,
    dense: dict[str, Any],
    *,
    epochs: int,
    episodes: int,
    agent: str,
    pending: dict[str, str] | None = None,
):
    """One product search with recovery: the searched and the uniform row.

    ``pending`` maps a claim to its interrupted search run: that run is resumed (its
    episodes replayed, its recoveries from their last finished epoch) when it is this
    search; a claim interrupted now (Ctrl-C, SIGTERM) is entered there."""
    from agents import SearchConfig
    from agents.baselines import uniform_choice

    task = _task(claim)
    budget = claim.budget if claim.budget is not None else budget_at_compression(task, claim)
    config = SearchConfig(
        task=_spec(claim),
        budget=round(budget, 6),
        agent=agent,
        episodes=episodes,
        finetune_epochs=epochs,
        distill=claim.distill,
        experiment="bench-headlines-fashion-vgg",
    )
    t0 = time.perf_counter()
    result = _search(config, claim.name, {} if pending is None else pending)
    uniform = uniform_choice(task, config.budget)
    ref = {"name": "dense", "test": dense["test"]}
    s = result.summary()
    rows = [
        _row(claim, task, result.best.choice, policy="searched", test=s["best_test_accuracy"],
             before=s["best_test_accuracy_before_recovery"], ref=ref, epochs=epochs),
        _row(claim, task, uniform, policy="uniform", test=s["uniform_test_accuracy"],
             before=s["uniform_test_accuracy_before_recovery"], ref=ref, epochs=epochs),
    ]  # fmt: skip
    for r in rows:
        r.update(budget=config.budget, agent=agent, episodes=episodes, run_id=result.run_id)
        r["seconds"] = time.perf_counter() - t0
    return rows


#: What an interrupted claim's run must share with the search asked for to be resumed.
SAME_SEARCH = ("task", "budget", "agent", "episodes", "finetune_epochs", "distill", "seed")


def _search(config, name: str, pending: dict[str, str]):
    """``run_search(config)``, resuming ``pending[name]`` when it is this search."""
    from agents import run_search
    from agents.app.search import SearchInterrupted, load_resume

    resume = None
    if name in pending:
        try:
            stored, state = load_resume(pending[name])
        except (KeyError, ValueError) as exc:  # gone, finished, or another store
            print(f"{name}: not resuming run {pending[name]}: {exc}", file=sys.stderr)
        else:
            if all(getattr(stored, k) == getattr(config, k) for k in SAME_SEARCH):
                print(f"{name}: resuming run {state.run_id}", file=sys.stderr, flush=True)
                config, resume = stored, state
    try:
        result = run_search(config, resume=resume)
    except SearchInterrupted as exc:
        if exc.run_id is not None:
            pending[name] = exc.run_id
        raise
    pending.pop(name, None)
    return result


def kang_claim(epochs: int) -> list[dict[str, Any]]:
    """Uniform balanced against uniform unstructured at equal density, both recovered."""
    from agents.app.finalize import recovered_model, recovery_recipe

    claim = CLAIMS["kang"]
    bal, uns = _task(claim), _task(claim, "unstructured")
    cb, cu = _uniform_at(bal, KANG_DENSITY), _uniform_at(uns, KANG_DENSITY)  # first kept dense
    t0 = time.perf_counter()
    rb = recovered_model(bal, cb, recovery_recipe(bal, epochs=epochs))
    ru = recovered_model(uns, cu, recovery_recipe(uns, epochs=epochs))
    ref = {"name": "unstructured", "test": ru.after}
    speedup = uns.cost(cu).cycles / bal.cost(cb).cycles
    row = _row(claim, bal, cb, policy="uniform", test=rb.after, before=rb.before, ref=ref,
               epochs=epochs, speedup=speedup)  # fmt: skip
    row.update(
        reference_density=uns.overall_density(cu),
        reference_test_before_recovery=ru.before,
        seconds=time.perf_counter() - t0,
    )
    return [row]


def _epochs(item: tuple[str, Any]) -> int:
    return int(item[0])


def table(doc: dict[str, Any]) -> str:
    """One line per row: the claim's figures against its target."""
    dense = doc.get("dense") or {}
    sha = doc.get("checkpoint")
    if sha is None:
        source = "a workload trained here"
    elif sha == checkpoint_sha256():
        source = f"the committed checkpoint (sha256 {sha[:12]})"
    else:
        source = f"a previous checkpoint (sha256 {sha[:12]}; --redo measures the committed one)"
    controls = doc.get("controls") or {str(dense.get("epochs", "?")): dense}
    lines = [
        f"{doc.get('model', '?')} from {source} (checkpoint "
        f"{100 * dense.get('checkpoint_test', float('nan')):.2f}%), every network recovered "
        "`ep` epochs at peak lr `lr` (`kd`: distilled from the dense model); dense controls "
        "fine-tuned as long: "
        + ", ".join(
            f"{100 * c['test']:.2f}% ({e} ep)" for e, c in sorted(controls.items(), key=_epochs)
        ),
        f"{'claim':6s} {'policy':9s} {'scheme':12s} {'ep':>4s} {'lr':>6s} {'weights':>8s} "
        f"{'MACs':>6s} "
        f"{'cost':>6s} {'speedup':>8s} {'test':>7s} {'pruned':>7s} {'ref':>7s} {'loss':>6s}  "
        "target",
    ]
    for r in doc.get("rows", []):
        lines.append(
            f"{r['claim']:6s} {r['policy']:9s} {r['scheme']:12s} "
            f"{str(r['epochs']) + ('kd' if r.get('distill') else ''):>4s} "
            f"{r.get('recovery_lr', float('nan')):6.3f} "
            f"{r['weight_compression']:7.2f}x {r['mac_compression']:5.2f}x "
            f"{r['cost_ratio']:6.3f} {r['speedup']:7.2f}x {100 * r['test']:7.2f} "
            f"{100 * r['test_before_recovery']:7.2f} {100 * r['reference_test']:7.2f} "
            f"{r['loss_points']:6.2f}  {'met' if r['meets_target'] else 'missed'}: "
            f"{CLAIMS[r['claim']].target}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the claims not yet in the results file, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--claims", nargs="+", choices=list(CLAIMS), default=list(CLAIMS))
    p.add_argument("--epochs", type=int, default=3, help="recovery epochs (default 3)")
    p.add_argument("--episodes", type=int, default=60, help="search episodes per claim")
    p.add_argument("--agent", default="ddpg", help="search agent (default: the product's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--redo", action="store_true", help="measure the claims again")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--model", default=WORKLOAD["model"], help="workload (smoke tests)")
    p.add_argument("--data", default=WORKLOAD["data"], help="its data (smoke tests)")
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
    # Rows of another checkpoint (retrained) are not comparable: --redo measures anew.
    current = (("epochs", args.epochs), ("model", args.model), ("checkpoint", checkpoint_sha256()))
    for key, want in current:
        if res.doc.get(key, want) != want and not args.redo:
            p.error(f"{args.out} holds rows of {key} {res.doc[key]!r}: pass --redo or --out")
    if res.doc.get("checkpoint") != checkpoint_sha256() and res.doc["rows"]:
        # --redo on a new checkpoint: no row of the old one stays beside the new ones.
        res.doc.update(rows=[], dense=None)
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HWPRUNE_NO_PROGRESS", "1")
    res.doc["dense"] = dense_control(res, args.epochs)
    for name in args.claims:
        if res.has(claim=name) and not args.redo:
            print(f"{name}: kept from {args.out}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        epochs = CLAIMS[name].epochs or args.epochs
        if name == "kang":
            rows = kang_claim(epochs)
        else:
            dense = dense_control(res, epochs)
            pending = res.doc.setdefault("pending", {})
            try:
                rows = searched_claim(
                    CLAIMS[name], dense, epochs=epochs, episodes=args.episodes,
                    agent=args.agent, pending=pending,
                )  # fmt: skip
            finally:
                if not pending:
                    res.doc.pop("pending")
                res.save()  # an interrupted claim's run, for the next start to resume
        res.drop(claim=name)
        res.add(
            rows,
            epochs=args.epochs,
            model=WORKLOAD["model"],
            data=WORKLOAD["data"],
            checkpoint=checkpoint_sha256(),
        )
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(table(res.doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
