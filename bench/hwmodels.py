"""Time ``network_cost`` of ResNet-50 under a full set of masks, for every hardware preset.

Target: at most 10 ms per call after the first. Prints a table and writes
bench/results/hwmodels.json; ``--report`` prints that file's table and runs nothing.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from hwmodels import get_hardware, list_hardware
from hwmodels.zoo import random_mask
from pruning import inspect_model

_HERE = Path(__file__).resolve().parent
RESULTS = _HERE / "results" / "hwmodels.json"


def resnet50_layers() -> list:
    """LayerSpecs of torchvision's ResNet-50 at 224x224, batch 1."""
    model = torchvision.models.resnet50(weights=None)
    return inspect_model(model, torch.zeros(1, 3, 224, 224))


def time_preset(preset: str, layers: list, masks: list, repeats: int) -> dict[str, float]:
    """First-call and median later-call milliseconds of ``network_cost``."""
    hw = get_hardware(preset)
    start = time.perf_counter()
    total = hw.network_cost(layers, masks)
    first = (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        hw.network_cost(layers, masks)
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "first_ms": first,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "latency_s": total.latency_s,
        "dense_latency_s": hw.network_cost(layers, None).latency_s,
    }


def table(result: dict) -> str:
    """The printed table of a results dict (``main``'s or ``RESULTS``')."""
    lines = [
        f"ResNet-50: {result['layers']} layers, {result['weights'] / 1e6:.1f} M weights, "
        f"masks at {result['density']}",
        f"{'preset':<16}{'first ms':>10}{'median ms':>11}{'min ms':>9}{'lat ratio':>11}",
    ]
    for preset, r in result["presets"].items():
        ratio = r["latency_s"] / r["dense_latency_s"]
        lines.append(
            f"{preset:<16}{r['first_ms']:>10.2f}{r['median_ms']:>11.2f}{r['min_ms']:>9.2f}"
            f"{ratio:>11.3f}"
        )
    return "\n".join(lines)


def main(repeats: int = 15, density: float = 0.5) -> dict:
    """Run the benchmark, print the table, write the JSON."""
    layers = resnet50_layers()
    rng = np.random.default_rng(0)
    masks = [random_mask(layer, density, rng) for layer in layers]
    weights = sum(layer.params for layer in layers)
    rows = {p: time_preset(p, layers, masks, repeats) for p in list_hardware()}
    result = {
        "workload": "resnet50-224",
        "layers": len(layers),
        "weights": weights,
        "density": density,
        "repeats": repeats,
        "machine": platform.platform(),
        "numpy": np.__version__,
        "presets": rows,
    }
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    if sys.argv[1:] == ["--report"]:  # print the committed table, run nothing
        print(table(json.loads(RESULTS.read_text(encoding="utf-8"))))
    elif sys.argv[1:]:
        sys.exit("usage: python -m bench.hwmodels [--report]")
    else:
        main()
