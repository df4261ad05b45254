"""``hwprune cost``: per-layer and total hardware cost of a model, dense and pruned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from agents.app.commands.errors import fail
from agents.checks import read_user_file
from core import defaults

if TYPE_CHECKING:
    from hwmodels import LayerSpec

console = Console()


def load_policy(path: Path) -> dict[str, float]:
    """Densities of a policy file ``{"densities": {layer_name: density}}``.

    Names may be module names (``features.0``) or parameter names (``features.0.weight``).
    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file
    for anything else wrong with it (not JSON, no densities, a density not in (0, 1]).
    """
    where = f"policy file {str(path)!r}"
    text = read_user_file(path, where, "JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise ValueError(f"{where} is not valid JSON: nested too deeply") from exc
    return _densities(data, where)


def policy_settings(path: Path) -> dict[str, str]:
    """The model, scheme and hardware a policy file names (a search's best_policy.json)."""
    data = json.loads(read_user_file(path, f"policy file {str(path)!r}", "JSON"))
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("model", "scheme", "hardware") if isinstance(data.get(k), str)}


def _densities(data: Any, where: str) -> dict[str, float]:
    densities = data.get("densities") if isinstance(data, dict) else None
    if not isinstance(densities, dict):
        raise ValueError(f"{where} has no 'densities' object")
    out: dict[str, float] = {}
    for name, value in densities.items():
        d = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                d = float(value)
            except OverflowError:
                d = None
        if d is None or not 0.0 < d <= 1.0:
            raise ValueError(
                f"{where}: density {value!r} for layer {name!r} is not a number in (0, 1]"
            )
        out[name.removesuffix(".weight")] = d
    return out


def compute_costs(
    *,
    model: str,
    hardware: str,
    scheme: str | None = None,
    density: float | None = None,
    policy: dict[str, float] | None = None,
    allow_partial: bool = True,
) -> dict[str, Any]:
    """Per-layer and total costs of workload ``model`` on ``hardware``, dense and pruned.

    Layers named in ``policy`` get their density there, the others ``density`` (or stay
    dense). With ``allow_partial=False`` and no ``density``, a policy that leaves layers
    out raises ``ValueError`` naming them. Returns a JSON-ready dict: ``layers`` (name,
    kind, density, dense, pruned cost dicts) and ``total`` (network costs, dense and
    pruned).
    """
    from hwmodels import get_hardware

    hw = get_hardware(hardware)  # KeyError naming the presets, before any long work
    if density is not None and not 0.0 < density <= 1.0:
        raise ValueError(f"density {density} is outside (0, 1]")
    if scheme is None and (density is not None or policy):
        raise ValueError("--density and --policy need a --scheme to build the masks")
    from envs import get_workload
    from envs.factory import hardware_and_scheme
    from pruning import inspect_model

    sch, pruned_hw = None, hw
    if scheme is not None:  # the task's own wiring (structure and index format)
        pruned_hw, sch = hardware_and_scheme(hardware, scheme, {}, {})
    workload = get_workload(model)
    layers = inspect_model(workload.model, workload.example_input)
    policy = dict(policy or {})
    unknown = sorted(set(policy) - {layer.name for layer in layers})
    if unknown:
        valid = ", ".join(layer.name for layer in layers)
        raise KeyError(f"policy names unknown layer(s) {', '.join(unknown)}; layers: {valid}")
    missing = [layer.name for layer in layers if layer.name not in policy]
    if policy and missing and density is None and not allow_partial:
        raise ValueError(
            f"policy has no density for layer(s) {', '.join(missing)}; name every layer, "
            "or pass --allow-partial to cost them dense (or --density D for their density)"
        )
    masks = []
    for layer in layers:
        d = policy.get(layer.name, density if density is not None else 1.0)
        if sch is None or d >= 1.0:
            masks.append(None)
            continue
        weight = workload.model.get_submodule(layer.name).weight.detach().cpu()
        masks.append(sch.mask(weight, d, layer).cpu().numpy().astype(bool))
    rows = []
    for layer, mask in zip(layers, masks, strict=True):
        kept = 1.0 if mask is None else float(mask.mean())
        rows.append(
            {
                "name": layer.name,
                "kind": layer.kind,
                "shape": _shape(layer),
                "density": kept,
                "dense": hw.cost(layer, None).as_dict(),
                "pruned": pruned_hw.cost(layer, mask).as_dict(),
            }
        )
    return {
        "model": model,
        "hardware": hw.describe(),
        "scheme": None if sch is None else sch.describe(),
        "layers": rows,
        "total": {
            "dense": hw.network_cost(layers, None).as_dict(),
            "pruned": pruned_hw.network_cost(layers, masks).as_dict(),
        },
    }


def _shape(layer: LayerSpec) -> str:
    k = "x".join(map(str, layer.kernel))
    group = f" g{layer.groups}" if layer.groups > 1 else ""
    hw = f"{layer.out_hw[0]}x{layer.out_hw[1]}"
    return f"{layer.in_channels}->{layer.out_channels} k{k}{group} @{hw}"


# How each metric is shown: (header, scale, format).
_SHOW: dict[str, tuple[str, float, str]] = {
    "cycles": ("cycles", 1.0, "{:,.0f}"),
    "latency_s": ("latency ms", 1e3, "{:.4g}"),
    "energy_j": ("energy uJ", 1e6, "{:.4g}"),
    "area_mm2": ("area mm2", 1.0, "{:.4g}"),
    "resources": ("resources", 1.0, "{:,.0f}"),
    "memory_bytes": ("memory KiB", 1 / 1024, "{:,.1f}"),
}


def _fmt(metric: str, value: float) -> str:
    _, scale, fmt = _SHOW[metric]
    return fmt.format(value * scale)


def render(result: dict[str, Any], out: Console = console) -> None:
    """Print the per-layer table and the totals (dense, pruned, ratio)."""
    title = f"{result['model']} on {result['hardware']['name']}"
    if result["scheme"]:
        title += f", scheme {result['scheme']['name']}"
    table = Table(title=title, title_justify="left")
    for col in ("layer", "shape", "density"):
        table.add_column(col)
    for metric in ("cycles", "latency_s", "energy_j", "resources", "memory_bytes"):
        table.add_column(_SHOW[metric][0], justify="right")
    table.add_column("latency vs dense", justify="right")
    for row in result["layers"]:
        dense_lat = row["dense"]["latency_s"]
        ratio = row["pruned"]["latency_s"] / dense_lat if dense_lat else float("nan")
        table.add_row(
            row["name"],
            row["shape"],
            f"{row['density']:.3f}",
            *(_fmt(m, row["pruned"][m]) for m in ("cycles", "latency_s", "energy_j")),
            *(_fmt(m, row["pruned"][m]) for m in ("resources", "memory_bytes")),
            f"{ratio:.3f}",
        )
    out.print(table)
    totals = Table(title="network totals", title_justify="left")
    for col in ("metric", "dense", "pruned", "pruned / dense"):
        totals.add_column(col, justify="right" if col != "metric" else "left")
    from hwmodels import COST_METRICS

    for metric in COST_METRICS:
        d, p = result["total"]["dense"][metric], result["total"]["pruned"][metric]
        totals.add_row(
            _SHOW[metric][0], _fmt(metric, d), _fmt(metric, p), f"{p / d:.4f}" if d else "-"
        )
    out.print(totals)


def cost_command(
    ctx: typer.Context,
    model: str = typer.Option(
        defaults.MODEL, help="Workload (see `hwprune list`; default: the --policy file's)."
    ),
    hardware: str = typer.Option(
        defaults.HARDWARE, help="Hardware preset (default: the --policy file's)."
    ),
    scheme: str | None = typer.Option(
        None, help="Pruning scheme of the masks (default: the --policy file's)."
    ),
    density: float | None = typer.Option(
        None, help="Density of every layer (of the layers --policy leaves out), in (0, 1]."
    ),
    policy: Path | None = typer.Option(
        None,
        help='Policy JSON {"densities": {layer: d}} (a search\'s best_policy.json); it must '
        "name every layer unless --density or --allow-partial is given.",
    ),
    allow_partial: bool = typer.Option(
        False,
        "--allow-partial",
        help="Accept a --policy that names only some layers; the others are costed dense.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Hardware cost of a model per layer and in total, dense and pruned."""
    try:
        densities = load_policy(policy) if policy is not None else None
        if policy is not None:
            # A search's best_policy.json names what it was pruned for; flags still win.
            named = policy_settings(policy)
            given = {n for n in ctx.params if ctx.get_parameter_source(n).name == "COMMANDLINE"}
            model = model if "model" in given else named.get("model", model)
            hardware = hardware if "hardware" in given else named.get("hardware", hardware)
            scheme = scheme if scheme is not None else named.get("scheme")
        result = compute_costs(
            model=model,
            hardware=hardware,
            scheme=scheme,
            density=density,
            policy=densities,
            allow_partial=allow_partial,
        )
    except (KeyError, ValueError, OSError) as exc:
        fail(exc)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        render(result)
