"""Benchmark every pruning scheme on ResNet-18: mask time and retained L2 energy per level.

For each scheme, times computing the masks of every level of every layer (one ranking per
layer, ``masks_for_levels``), then, for a few requested densities, snaps each layer to its
level and reports the realised density and the fraction of squared L2 weight norm kept,
over the layers the scheme prunes. Weights are torchvision's random initialisation
(``weights=None``: nothing is downloaded), so energies show what each structure costs on
unstructured Gaussian-like weights, not on a trained network.

Prints a table and writes ``bench/results/schemes.json``. Run: ``python -m bench.schemes``;
``--report`` prints the stored file's table and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torchvision

from pruning import get_scheme, inspect_model

VARIANTS: dict[str, dict[str, object]] = {
    "unstructured": {},
    "balanced": {},
    "channel": {},
    "crossbar": {},
    "crossbar-column": {"grain": "column"},
    "crossbar-reorder": {"reorder": True},
    "ikr": {},
    "pattern": {},
}
DENSITIES = (0.125, 0.25, 0.5, 0.75)


def bench_scheme(
    label: str, params: dict[str, object], weights: dict, layers: list, repeats: int
) -> dict:
    """Timing and retained energy of one scheme variant."""
    scheme = get_scheme(label.split("-")[0], **params)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        all_masks = {ly.name: scheme.masks_for_levels(weights[ly.name], ly) for ly in layers}
        times.append(time.perf_counter() - start)
    pruned = [ly for ly in layers if len(scheme.levels(ly)) > 1]
    total_energy = sum(float(weights[ly.name].pow(2).sum()) for ly in pruned)
    total_params = sum(ly.params for ly in pruned)
    rows = []
    for d in DENSITIES:
        kept = energy = 0.0
        for ly in pruned:
            levels = scheme.levels(ly)
            mask = all_masks[ly.name][int((levels <= scheme.snap(d, ly) + 1e-12).sum()) - 1]
            kept += int(mask.sum())
            energy += float(weights[ly.name].pow(2)[mask].sum())
        rows.append(
            {
                "requested": d,
                "density": kept / total_params if total_params else 1.0,
                "energy": energy / total_energy if total_energy else 1.0,
            }
        )
    return {
        "scheme": label,
        "params": scheme.describe(),
        "seconds_best": min(times),
        "seconds_all": times,
        "levels_total": sum(len(scheme.levels(ly)) for ly in layers),
        "pruned_layers": len(pruned),
        "layers": len(layers),
        "rows": rows,
    }


def table(doc: dict) -> str:
    """The printed table of a results file's dict (``{"meta": ..., "results": [...]}``)."""
    densities = [x["requested"] for x in doc["results"][0]["rows"]] if doc["results"] else []
    lines = [
        f"{'scheme':<18}{'time s':>8}{'levels':>8}{'layers':>8}  "
        + "  ".join(f"d={d:<5} (dens, energy)" for d in densities)
    ]
    for r in doc["results"]:
        cells = "  ".join(f"{x['density']:.3f}, {x['energy']:.3f}".ljust(24) for x in r["rows"])
        lines.append(
            f"{r['scheme']:<18}{r['seconds_best']:>8.2f}{r['levels_total']:>8}"
            f"{r['pruned_layers']:>5}/{r['layers']:<2}  {cells}"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "schemes.json"
    )
    parser.add_argument(
        "--report", action="store_true", help="print the table of --out, run nothing"
    )
    args = parser.parse_args()
    if args.report:
        print(table(json.loads(args.out.read_text())))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    layers = inspect_model(model, torch.randn(1, 3, 64, 64))
    params = dict(model.named_parameters())
    weights = {ly.name: params[f"{ly.name}.weight"].detach() for ly in layers}
    results = [bench_scheme(k, v, weights, layers, args.repeats) for k, v in VARIANTS.items()]
    print(f"resnet18, {sum(ly.params for ly in layers):,} weights, {args.threads} threads")
    meta = {"model": "resnet18", "threads": args.threads, "machine": platform.machine()}
    print(table({"meta": meta, "results": results}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
