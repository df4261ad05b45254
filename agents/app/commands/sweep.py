"""``hwprune sweep``: a grid of searches on Ray, one MLflow parent run with a child each."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from agents.app.commands.errors import check_resume_flags, fail
from agents.app.search_params import SEARCH_PARAMS
from core import defaults

console = Console()

#: Flags that take comma-separated lists: each becomes an axis of the grid.
LIST_FLAGS = {"scheme": str, "hardware": str, "budget": float, "seed": int, "agent": str}

#: The search defaults the flags' help names (a flag left out takes the setting's own).
_SEARCH = SEARCH_PARAMS.defaults()


def _split(text: str, kind: type, flag: str) -> list[Any]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{flag} {text!r} names no value")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ValueError(
            f"--{flag} {text!r} is not a comma-separated list of {kind.__name__} values"
        ) from None


def load_sweep_file(path: Path) -> dict[str, Any]:
    """The settings of a sweep YAML file; ``ValueError`` naming the file otherwise."""
    from agents.checks import read_yaml_mapping

    return read_yaml_mapping(path, f"sweep file {str(path)!r}")


def build_spec(
    file_settings: dict[str, Any],
    flags: dict[str, Any],
    *,
    where: str = "",
) -> Any:
    """A ``SweepSpec`` from a file's settings and the flags given (flags win)."""
    from agents.app.sweep import SweepSpec

    settings = dict(file_settings)
    grid = dict(settings.pop("grid", None) or {})
    task = settings.pop("task", None) or {}
    if isinstance(task, dict):
        settings.update(task)
    resources = dict(settings.pop("resources", None) or {})
    for key, kind in LIST_FLAGS.items():
        if flags.get(key) is None:
            continue
        values = _split(flags.pop(key), kind, key)
        settings.pop(key, None)
        grid.pop(key, None)
        if len(values) == 1:
            settings[key] = values[0]
        else:
            grid[key] = values
    pairs = flags.pop("pair", None)
    if pairs:
        settings["pairs"] = list(pairs)
    for key in ("cpus", "gpus"):
        if flags.get(key) is not None:
            resources[key] = flags.pop(key)
    flags.pop("cpus", None), flags.pop("gpus", None)
    for key, value in flags.items():
        if value is not None:
            settings[key] = value
    settings["grid"] = grid
    settings["resources"] = resources
    return SweepSpec.from_dict(settings, where=where)


def _check_flag_names(
    *,
    model: str | None,
    scheme: str | None,
    hardware: str | None,
    agent: str | None,
    pair: list[str] | None,
    metric: str | None,
    proxy: str | None,
    device: str | None,
) -> None:
    """The names the flags give (comma-separated lists, SCHEME:HARDWARE pairs), checked
    against the name table (``agents.app.catalog``) and named as ``SweepSpec`` names a bad
    trial (``trial scheme=balancd: ...``); malformed values are left to ``SweepSpec``."""
    from agents.app.catalog import check_names

    def items(text: str | None) -> list[str]:
        return [t.strip() for t in (text or "").split(",") if t.strip()]

    checks: list[tuple[str, dict[str, str]]] = []
    for key, text in (("scheme", scheme), ("hardware", hardware), ("agent", agent)):
        checks += [(f"{key}={v}", {key: v}) for v in items(text)]
    for p in pair or []:
        sch, sep, hw = (x.strip() for x in p.partition(":"))
        if sep:
            checks.append((f"scheme={sch},hardware={hw}", {"scheme": sch, "hardware": hw}))
    for trial, names in checks:
        try:
            check_names(**names)
        except (KeyError, ValueError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise type(exc)(f"trial {trial}: {msg}") from None
    check_names(model=model, metric=metric, proxy=proxy, device=device)


def sweep_command(
    ctx: typer.Context,
    config: Path = typer.Option(
        None, help="YAML file: search settings, grid: {key: [values]}, pairs:, resources:."
    ),
    model: str = typer.Option(None, help=f"Workload (default {defaults.MODEL})."),
    scheme: str = typer.Option(None, help="Schemes, comma-separated (an axis of the grid)."),
    hardware: str = typer.Option(None, help="Hardware presets, comma-separated."),
    pair: list[str] = typer.Option(
        None, "--pair", help="SCHEME:HARDWARE, repeated: pairs instead of their product."
    ),
    budget: str = typer.Option(None, help="Budgets, comma-separated (e.g. 0.4,0.6)."),
    seed: str = typer.Option(None, help="Seeds, comma-separated (e.g. 0,1,2)."),
    agent: str = typer.Option(None, help=f"Agents, comma-separated (default {_SEARCH['agent']})."),
    metric: str = typer.Option(None, help="Budgeted cost metric (default: the hardware's)."),
    episodes: int = typer.Option(
        None, help=f"Evaluated episodes per search (default {_SEARCH['episodes']})."
    ),
    proxy: str = typer.Option(None, help="Accuracy proxy."),
    finetune_steps: int = typer.Option(None, help="Fine-tune steps before export."),
    experiment: str = typer.Option(
        None, help=f"MLflow experiment (default {_SEARCH['experiment']})."
    ),
    device: str = typer.Option(None, help="Where proxies evaluate: cpu|cuda|auto."),
    cpus_per_trial: float = typer.Option(None, "--cpus-per-trial", help="CPUs per trial (1)."),
    gpus_per_trial: float = typer.Option(
        None, "--gpus-per-trial", help="GPU share per trial (e.g. 0.25; needs --device cuda)."
    ),
    max_retries: int = typer.Option(None, help="Reruns of a trial whose worker died (3)."),
    address: str = typer.Option(
        None, help="Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: local Ray)."
    ),
    num_cpus: int = typer.Option(None, help="CPUs of the local Ray (default: all)."),
    ship_code: bool = typer.Option(
        False, help="Send hwprune's packages to the workers (clusters without it installed)."
    ),
    progress: bool = typer.Option(True, help="Show progress while it runs."),
    resume: str = typer.Option(
        None,
        metavar="SWEEP_RUN_ID",
        help="Continue a sweep whose driver stopped (kill -9, a lost machine) with its own "
        "grid: unfinished grid points run again, started ones resume from their journals "
        "(--address, --num-cpus, --ship-code and --progress apply).",
    ),
) -> None:
    """Run a grid of searches on Ray; each search is a child run of one sweep run."""
    try:  # names first, from the light table: a typo costs no import of torch, Ray, MLflow
        _check_flag_names(
            model=model, scheme=scheme, hardware=hardware, agent=agent, pair=pair,
            metric=metric, proxy=proxy, device=device,
        )  # fmt: skip
        from agents.extras import require_extra

        require_extra("sweep", "hwprune sweep")
    except (KeyError, ValueError) as exc:
        fail(exc)
    from agents.app.sweep import run_sweep
    from tracking import StoreError

    if resume is not None:
        _resume(ctx, resume, address, num_cpus, ship_code, progress)
        return

    flags = {
        "model": model,
        "scheme": scheme,
        "hardware": hardware,
        "pair": pair,
        "budget": budget,
        "seed": seed,
        "agent": agent,
        "metric": metric,
        "episodes": episodes,
        "proxy": proxy,
        "finetune_steps": finetune_steps,
        "experiment": experiment,
        "device": device,
        "cpus": cpus_per_trial,
        "gpus": gpus_per_trial,
        "max_retries": max_retries,
    }
    try:
        _check_num_cpus(num_cpus)
        settings = load_sweep_file(config) if config is not None else {}
        where = f"sweep file {str(config)!r}: " if config is not None else ""
        spec = build_spec(settings, flags, where=where)
    except (KeyError, ValueError, FileNotFoundError, TypeError) as exc:
        fail(exc)
    command = " ".join(shlex.quote(a) for a in ["hwprune", *sys.argv[1:]])
    bar = _progress_bar(len(spec.trials(check_device=False))) if progress else None
    try:
        result = run_sweep(
            spec,
            address=address,
            num_cpus=num_cpus,
            command=command,
            ship_code=ship_code,
            on_update=bar.update if bar is not None else None,
            on_start=_announce,
        )
    except (KeyError, ValueError, FileNotFoundError, StoreError) as exc:
        if bar is not None:
            bar.close()
        fail(exc)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        console.print(
            "sweep interrupted: its runs are KILLED; continue it with "
            "`hwprune sweep --resume SWEEP_RUN_ID`"
        )
        raise typer.Exit(130) from None
    if bar is not None:
        bar.close()
    _print_result(result)
    if not result.ok:
        raise typer.Exit(1)


def _announce(run_id: str) -> None:
    """The sweep run's id as soon as it exists: what `sweep --resume` needs if the driver
    is killed."""
    console.print(
        f"sweep run id: [bold]{run_id}[/] (if this driver stops: hwprune sweep --resume {run_id})",
        soft_wrap=True,
    )


def _check_num_cpus(num_cpus: int | None) -> None:
    from agents.checks import usable_cpus

    if num_cpus is not None and not 1 <= num_cpus <= usable_cpus():
        raise ValueError(
            f"--num-cpus must be in [1, {usable_cpus()}] (the CPUs this process may use), "
            f"got {num_cpus}"
        )


def _resume(
    ctx: typer.Context,
    run_id: str,
    address: str | None,
    num_cpus: int | None,
    ship_code: bool,
    progress: bool,
) -> None:
    """``sweep --resume SWEEP_RUN_ID``: the sweep's own grid, its unfinished points run."""
    from agents.app.sweep import resume_sweep
    from tracking import StoreError

    allowed = {"resume", "address", "num_cpus", "ship_code", "progress"}
    try:
        check_resume_flags(ctx, allowed, "a sweep", "grid and settings")
        _check_num_cpus(num_cpus)
    except ValueError as exc:
        fail(exc)
    command = " ".join(shlex.quote(a) for a in ["hwprune", *sys.argv[1:]])
    bar = _progress_bar(0) if progress else None
    try:
        result = resume_sweep(
            run_id,
            address=address,
            num_cpus=num_cpus,
            command=command,
            ship_code=ship_code,
            on_update=bar.update if bar is not None else None,
            on_start=_announce,
        )
    except (KeyError, ValueError, FileNotFoundError, StoreError) as exc:
        if bar is not None:
            bar.close()
        fail(exc)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        console.print(
            f"sweep interrupted again: continue it with `hwprune sweep --resume {run_id}`"
        )
        raise typer.Exit(130) from None
    if bar is not None:
        bar.close()
    _print_result(result)
    if not result.ok:
        raise typer.Exit(1)


class _progress_bar:  # noqa: N801 - used like a function
    """Episodes of the whole sweep, with trials done, running, retried and failed."""

    def __init__(self, trials: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, desc="sweep", unit="ep", dynamic_ncols=True)
        self.trials = trials
        self.last: tuple[int, str] | None = None

    def update(self, state: Any) -> None:
        running = len(state.progress) - state.finished
        retried = sum(p.get("attempt", 1) > 1 for p in state.progress.values())
        now = (
            min(state.episodes_done, state.episodes_total),
            f"trials {state.finished}/{state.total} done, {max(running, 0)} running, "
            f"{retried} retried, {len(state.failures)} failed",
        )
        if now == self.last:
            return
        self.last = now
        self.bar.total = state.episodes_total
        self.bar.n = now[0]
        self.bar.set_postfix_str(now[1])

    def close(self) -> None:
        self.bar.close()


def _print_result(result: Any) -> None:
    table = Table(title="sweep: best policy per (scheme, hardware, budget), mean +- std")
    for col in (
        "scheme",
        "hardware",
        "budget",
        "runs",
        "complete",
        "test acc",
        "holdout acc",
        "cost ratio",
        "uniform test",
    ):
        table.add_column(col, justify="right")
    for r in result.table:
        table.add_row(
            r["scheme"],
            r["hardware"],
            f"{r['budget']:g}",
            str(r["runs"]),
            str(r["complete"]),
            f"{r['test_accuracy']:.4f} +- {r['test_accuracy_std']:.4f}",
            f"{r['holdout_accuracy']:.4f} +- {r['holdout_accuracy_std']:.4f}",
            f"{r['cost_ratio']:.4f}",
            f"{r['uniform_test_accuracy']:.4f}",
        )
    console.print(table)
    retried = [r["name"] for r in result.rows if int(r.get("attempts", 1)) > 1]
    if retried:
        console.print(f"retried after a lost worker: {', '.join(retried)}")
    for name, err in result.failures.items():
        console.print(f"[bold red]failed:[/] {name}: {err}")
    complete = sum(bool(r.get("complete")) for r in result.rows)
    console.print(
        f"{complete}/{len(result.rows)} runs complete in {result.wall_s:.1f} s; "
        f"sweep run id: [bold]{result.run_id}[/] (table: sweep/table.md, plot: "
        "plots/accuracy_vs_cost.png)"
    )
