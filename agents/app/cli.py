"""The ``hwprune`` command line: search, export, cost, list, profile-gpu."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from agents.app.commands.errors import (
    OneLineUsageErrors,
    check_resume_flags,
    fail,
    given_options,
    set_debug,
)
from agents.app.search_params import SEARCH_PARAMS
from core import defaults
from hwmodels import within_budget

app = typer.Typer(
    cls=OneLineUsageErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Search hardware-aware pruning policies with reinforcement learning.",
)
console = Console()


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="HWPRUNE_DEBUG",
        help="Show the full Python traceback of a failure instead of one error line.",
    ),
) -> None:
    """Search hardware-aware pruning policies with reinforcement learning."""
    set_debug(debug)
    ctx.call_on_close(lambda: set_debug(False))


def _parse_overrides(items: list[str] | None, what: str) -> dict[str, Any]:
    """``agents.checks.parse_overrides`` with its error as the CLI's bad parameter."""
    from agents.checks import parse_overrides

    try:
        return parse_overrides(items, what)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _fail(exc: BaseException) -> NoReturn:
    """One ``error:`` line and exit code 2 (the full traceback with ``--debug``)."""
    fail(exc)


def load_config_file(path: Path) -> dict[str, Any]:
    """The settings of a ``--config`` YAML file (flat: the task's keys beside the
    search's), checked as a ``SearchConfig``; ``ValueError`` naming the file otherwise."""
    from agents.app.search import SearchConfig
    from agents.checks import read_yaml_mapping

    where = f"config file {str(path)!r}"
    settings = read_yaml_mapping(path, where)
    # Unknown keys, types and ranges, named with the file; flags may override it later.
    SearchConfig.from_dict(settings, where=f"{where}: ")
    task = settings.get("task") or {}
    return {**{k: v for k, v in settings.items() if k != "task"}, **task}


def _check_config_option(value: Path | None) -> Path | None:
    """``--config`` callback: fail on a bad file before anything else runs."""
    if value is not None:
        try:
            load_config_file(value)
        except (KeyError, ValueError, FileNotFoundError) as exc:
            _fail(exc)
    return value


def _setting(name: str, *flags: str) -> Any:
    """The ``typer.Option`` of ``SearchConfig`` setting ``name``: its default and help
    from ``SEARCH_PARAMS``, so that the flag cannot drift from the setting. ``flags``:
    the option's names when typer's own (``--finetune-steps``) would not do."""
    param = SEARCH_PARAMS[name]
    return typer.Option(param.default, *flags, help=param.help)


@app.command()
def search(
    ctx: typer.Context,
    model: str = typer.Option(defaults.MODEL, help="Workload (see `hwprune list`)."),
    scheme: str = typer.Option(defaults.SCHEME, help="Pruning scheme."),
    hardware: str = typer.Option(defaults.HARDWARE, help="Hardware preset."),
    metric: str = typer.Option(
        None,
        help="Budgeted cost: latency|energy|area|resources|memory|cycles (default: the "
        "hardware's own: latency; resources (crossbars) for reram-*; cycles (kept MACs) "
        "for flops).",
    ),
    budget: float = _setting("budget"),
    agent: str = _setting("agent"),
    episodes: int = _setting("episodes"),
    seed: int = _setting("seed"),
    experiment: str = _setting("experiment"),
    proxy: str = _setting("proxy"),
    shortlist: int = _setting("shortlist"),
    shortlist_proxy: str = _setting("shortlist_proxy"),
    reward: str = _setting("reward"),
    n_envs: int = _setting("n_envs", "--n-envs"),
    data: str = typer.Option(
        None,
        help="Data: the model's default (digits; fashion-mnist for fashion-cnn), digits-aug, "
        "fashion-mnist, or a dir of idx files, CIFAR-10 batches or an ImageFolder.",
    ),
    checkpoint: Path = typer.Option(None, help="State-dict checkpoint of the model."),
    finetune_steps: int = _setting("finetune_steps"),
    finetune_epochs: int = _setting("finetune_epochs"),
    distill: bool = _setting("distill"),
    gradual: float = _setting("gradual"),
    threads: int = _setting("threads"),
    device: str = _setting("device"),
    hp: list[str] = typer.Option(None, "--hp", help="Agent hyperparameter KEY=VALUE."),
    scheme_param: list[str] = typer.Option(None, "--scheme-param", help="Scheme KEY=VALUE."),
    hw_param: list[str] = typer.Option(None, "--hw-param", help="Hardware KEY=VALUE."),
    keep_dense: list[str] = typer.Option(
        None,
        "--keep-dense",
        metavar="LAYER",
        help="Leave this layer unpruned: a layer name, or first / last (repeatable).",
    ),
    export: Path = typer.Option(None, help="Also export the best pruned model to this dir."),
    budgets: str = typer.Option(
        None, help="LOW:HIGH: train one budget-conditioned agent and log the whole front."
    ),
    points: int = _setting("points"),
    config: Path = typer.Option(
        None, help="YAML file of search settings (flags override).", callback=_check_config_option
    ),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    register: str = typer.Option(
        None, metavar="NAME", help="Register the best pruned model in the Model Registry."
    ),
    resume: str = typer.Option(
        None,
        metavar="RUN_ID",
        help="Continue an interrupted search run with its own settings (other search "
        "flags are refused; --export and --progress apply).",
    ),
) -> None:
    """Search a pruning policy; log everything to an MLflow run; print a summary."""
    if resume is not None:
        _resume_search(ctx, resume, export, progress, register)
        return
    from agents.app.catalog import check_names

    try:  # names first, from the light table: a typo costs no import of torch, SB3, MLflow
        check_names(
            model=model,
            scheme=scheme,
            hardware=hardware,
            metric=metric,
            agent=agent,
            proxy=proxy,
            shortlist_proxy=shortlist_proxy,
            reward=reward,
            device=device,
        )
    except (KeyError, ValueError) as exc:
        _fail(exc)

    from agents.app.search import SEARCH_FIELDS, SearchConfig
    from envs import TASK_FIELDS

    try:
        settings = load_config_file(config) if config is not None else {}
        explicit = given_options(ctx)
        # Flags carry the settings' own names: a flag given, or one the file lacks, wins.
        for name in (*SEARCH_FIELDS, *TASK_FIELDS):
            if name in ctx.params and (name in explicit or name not in settings):
                settings[name] = ctx.params[name]
        if settings.get("keep_dense") is None:  # flag not given
            settings.pop("keep_dense", None)
        if checkpoint is not None and "checkpoint" in explicit:
            settings["checkpoint"] = str(checkpoint)
        if isinstance(settings.get("budgets"), str):
            settings["budgets"] = _parse_range(settings["budgets"])
        for key, items, what in (
            ("agent_params", hp, "--hp"),
            ("scheme_params", scheme_param, "--scheme-param"),
            ("hardware_params", hw_param, "--hw-param"),
        ):
            settings[key] = {**settings.get(key, {}), **_parse_overrides(items, what)}
        cfg = SearchConfig.from_dict(settings)
    except (KeyError, ValueError, FileNotFoundError, typer.BadParameter) as exc:
        _fail(exc)
    from agents.app.catalog import refresh

    refresh()  # the registries are loaded now: keep the name table of later commands fresh

    command = " ".join(shlex.quote(a) for a in ["hwprune", *sys.argv[1:]])
    if cfg.budgets is not None:
        _search_front(cfg, command, progress, export=export)
        return
    _run_and_report(cfg, command=command, export=export, progress=progress, register=register)


def _run_and_report(
    cfg: Any,
    *,
    command: str,
    export: Path | None,
    progress: bool,
    resume: Any = None,
    register: str | None = None,
) -> None:
    """Run a (resumed) search under a progress bar; print its summary or how it stopped."""
    from tqdm import tqdm

    from agents.app.search import SearchInterrupted, run_search
    from tracking import JournalWriteError, StoreFailure

    done = 0 if resume is None else len(resume.records)
    # The bar appears with the first episode: checks, training and table building before
    # it print their own messages instead of a bar stuck at 0.
    bars: list[Any] = []

    def episode_done(n: int) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=cfg.episodes,
                    initial=done,
                    desc="episodes",
                    unit="ep",
                    disable=not progress,
                )
            )
        bars[-1].update(n)

    def close_bar() -> None:
        if bars:
            bars[-1].close()

    recovery_bar = _recovery_bars(bars, cfg.finetune_epochs, progress)

    try:
        result = run_search(
            cfg,
            command=command,
            export_dir=export,
            progress=episode_done,
            resume=resume,
            register=register,
            recovery_progress=recovery_bar,
        )
    except SearchInterrupted as exc:
        close_bar()
        _report_interrupted(exc)
    except (KeyError, ValueError, FileExistsError) as exc:
        close_bar()
        _fail(exc)
    except (StoreFailure, JournalWriteError) as exc:  # a full disk, a lost server
        close_bar()
        fail(exc, code=1)
    close_bar()
    _print_summary(cfg, result)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15."""
    import signal

    return signal.Signals(signum).name


def _report_interrupted(exc: Any) -> None:
    """Where an interrupted search stands and how to continue it; exit 128 + signal."""
    name = signal_name(exc.signum)
    if exc.run_id is None:
        console.print(f"interrupted by {name} before the search run started; nothing to keep")
    else:
        console.print(
            f"interrupted by {name} after {exc.episodes} episodes; MLflow run "
            f"[bold]{exc.run_id}[/] is KILLED and keeps every finished episode, the best "
            "policy so far and its pruned model."
        )
        if exc.recovery_kept:
            console.print(
                "its recovery's finished epochs are kept on this machine; --resume goes on "
                "from the last one"
            )
        console.print(f"resume with: hwprune search --resume {exc.run_id}")
    raise typer.Exit(exc.exit_code)


def _resume_search(
    ctx: typer.Context, run_id: str, export: Path | None, progress: bool, register: str | None
) -> None:
    """``search --resume RUN_ID``: the run's own settings, its journal replayed."""
    from agents.app.search import load_resume

    try:
        check_resume_flags(ctx, {"resume", "export", "progress", "register"}, "a run")
        cfg, state = load_resume(run_id)
    except (KeyError, ValueError) as exc:
        _fail(exc)
    command = " ".join(shlex.quote(a) for a in ["hwprune", *sys.argv[1:]])
    console.print(
        f"resuming run {run_id}: {len(state.records)} of {cfg.episodes} episodes done "
        "(replayed from the journal, not re-evaluated)"
    )
    if cfg.budgets is not None:
        _search_front(cfg, command, progress, export=export, resume=state)
        return
    _run_and_report(
        cfg, command=command, export=export, progress=progress, resume=state, register=register
    )


def _parse_range(text: str) -> tuple[float, float]:
    """``"0.3:0.8"`` -> ``(0.3, 0.8)``; ``ValueError`` naming the bad value."""
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return float(low), float(high)
    except ValueError:
        raise ValueError(f"--budgets {text!r} is not LOW:HIGH (e.g. 0.3:0.8)") from None


def _recovery_bars(bars: list[Any], epochs: int, progress: bool) -> Any:
    """``recovery_progress`` for a search: each recovery closes the bar before it and
    shows its own, per step, with its total (``bars`` holds them, the last one open)."""
    from tqdm import tqdm

    def recovery_bar(label: str, total: int) -> Any:
        if bars:
            bars[-1].close()
        desc = f"recovery of {label} ({epochs} ep)"
        bar = tqdm(total=total, desc=desc, unit="step", disable=not progress)
        bars.append(bar)
        # on_step gets the steps done so far (1, 2, ...), not an increment.
        return lambda done: bar.update(done - bar.n)

    return recovery_bar


def _search_front(
    cfg: Any,
    command: str,
    progress: bool,
    *,
    export: Path | None = None,
    resume: Any = None,
) -> None:
    """``search --budgets``: one budget-conditioned agent, the accuracy-cost front."""
    from tqdm import tqdm

    from agents.app.frontier import run_frontier
    from agents.app.search import SearchInterrupted
    from tracking import JournalWriteError, StoreFailure

    done = 0 if resume is None else len(resume.records)
    bar = tqdm(total=cfg.episodes, initial=done, desc="episodes", unit="ep", disable=not progress)
    bars = [bar]

    recovery_bar = _recovery_bars(bars, cfg.finetune_epochs, progress)

    try:
        result = run_frontier(
            cfg,
            command=command,
            progress=bar.update,
            resume=resume,
            export_dir=export,
            recovery_progress=recovery_bar,
        )
    except SearchInterrupted as exc:
        bars[-1].close()
        _report_interrupted(exc)
    except (KeyError, ValueError, FileExistsError) as exc:
        bars[-1].close()
        _fail(exc)
    except (StoreFailure, JournalWriteError) as exc:  # a full disk, a lost server
        bars[-1].close()
        fail(exc, code=1)
    bars[-1].close()
    tuned = f" (+{cfg.finetune_steps} ft)" if cfg.finetune_steps else ""
    if cfg.finetune_epochs:
        tuned = f" (recovered {cfg.finetune_epochs} ep)"
    table = Table(title=f"{cfg.agent} front: {cfg.task.scheme} on {cfg.task.hardware}")
    for col in ("budget", "holdout", f"test{tuned}", "cost", "from", "uniform test", "u. cost"):
        table.add_column(col, justify="right")
    for p in result.points:
        table.add_row(
            f"{p.budget:.3f}",
            f"{p.accuracy:.4f}",
            f"{p.test_accuracy:.4f}",
            f"{p.cost_ratio:.3f}",
            p.source,
            "-" if p.uniform_test_accuracy is None else f"{p.uniform_test_accuracy:.4f}",
            "-" if p.uniform_cost_ratio is None else f"{p.uniform_cost_ratio:.3f}",
        )
    console.print(table)
    console.print(f"episodes: {result.episodes}   MLflow run id: [bold]{result.run_id}[/]")
    console.print(f"export a point: hwprune export {result.run_id} --budget B --out DIR")
    if export is not None:
        console.print(f"exported every point under {export}/b<budget>/")


def _print_summary(cfg: Any, result: Any) -> None:
    s = result.summary()
    table = Table(
        title=f"{cfg.agent} vs uniform: {cfg.task.scheme} on {cfg.task.hardware}, "
        f"{result.metric} budget {cfg.budget:g}"
    )
    tuned = f" (+{result.finetune_steps} ft)" if result.finetune_steps else ""
    recovered = bool(result.finetune_epochs)
    test_cols = (
        ("test, pruned", f"test, recovered {result.finetune_epochs} ep")
        if recovered
        else (f"test acc{tuned}",)
    )
    for col in ("policy", f"holdout ({result.proxy} proxy)", *test_cols, "cost ratio", "density"):
        table.add_column(col, justify="right")
    dense_tests = ("-", f"{s['dense_test_accuracy']:.4f}") if recovered else (
        f"{s['dense_test_accuracy']:.4f}",
    )  # fmt: skip
    table.add_row("dense", f"{s['dense_holdout_accuracy']:.4f}", *dense_tests, "1.0000", "1.0000")
    for who in ("best", "uniform"):
        tests = [f"{s[f'{who}_test_accuracy']:.4f}"]
        if recovered:
            tests.insert(0, f"{s[f'{who}_test_accuracy_before_recovery']:.4f}")
        table.add_row(
            f"{cfg.agent} (best)" if who == "best" else "uniform",
            f"{s[f'{who}_holdout_accuracy']:.4f}",
            *tests,
            f"{s[f'{who}_cost_ratio']:.4f}",
            f"{s[f'{who}_density']:.4f}",
        )
    console.print(table)
    if recovered:
        console.print(
            "the exported and registered model is the recovered one (masks fixed, "
            f"{result.finetune_epochs} epochs"
            + (", distilled from dense" if cfg.distill else "")
            + "); holdout accuracies are the search proxy's"
        )
    if result.finetune_steps:
        console.print(
            f"test accuracies of the pruned models are after {result.finetune_steps} fine-tune "
            "steps (masks fixed); holdout accuracies are the search's, without"
        )
    refined = f" (the last {result.refined_episodes} refining)" if result.refined_episodes else ""
    console.print(f"episodes: {result.episodes}{refined}   best episode: {result.best.episode}")
    console.print(f"MLflow run id: [bold]{result.run_id}[/]")
    if result.model_uri is not None:
        console.print(f"MLflow model: {result.model_uri}", markup=False, soft_wrap=True)
    from tracking.query import ui_hint
    from tracking.sqlite_runs import tracking_uri

    uri = tracking_uri() or ""
    console.print(ui_hint(uri, result.experiment_id, result.run_id), soft_wrap=True, markup=False)
    if result.export_dir is not None:
        console.print(f"exported pruned model: {result.export_dir}")


def _check_export_target(out: Path, force: bool) -> None:
    """``ValueError``/``FileExistsError`` unless ``export --out`` may write ``out``.

    ``--force`` replaces an earlier export (a directory holding a manifest) or an empty
    directory; never a file, a symbolic link, the current directory or one of its parents.
    """
    from agents.checks import unwritable

    shown = repr(str(out))
    target = out.resolve()
    if out.exists() or out.is_symlink():
        if not force:
            raise FileExistsError(f"{shown} exists; pass --force to replace it")
        cwd = Path.cwd().resolve()
        if target == cwd or target in cwd.parents:
            raise ValueError(
                f"--out {shown} is the current directory or one of its parents; "
                "--force will not replace it: pass a new directory"
            )
        if out.is_symlink() or not out.is_dir():
            kind = "a symbolic link" if out.is_symlink() else "a file"
            raise ValueError(
                f"--out {shown} is {kind}, not an export directory; --force replaces only "
                "an earlier export: remove it or pass another --out"
            )
        if (not (out / "manifest.json").is_file()) and any(out.iterdir()):
            raise ValueError(
                f"--out {shown} is not an hwprune export (no manifest.json) and not empty; "
                "--force replaces only an earlier export: pass another --out"
            )
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {shown}: {str(ancestor)!r} is not a directory")
    problem = unwritable(ancestor)
    if problem is not None:
        raise ValueError(
            f"cannot write {shown}: directory {str(ancestor)!r} is not writable ({problem})"
        )


def _front_point(run_id: str, budget: float | None) -> str:
    """The artifact path of the export to take: a search's, or a front point's."""

    from tracking import TrackingError, discard_download, download_artifacts

    try:
        front_file = download_artifacts(run_id, "front.json")
    except (KeyError, OSError, TrackingError):
        if budget is not None:
            raise ValueError(
                f"run {run_id!r} is not a front run (search --budgets): drop --budget"
            ) from None
        return "pruned_model"
    front = json.loads(front_file.read_text())
    discard_download(front_file)
    return _pick_front_point(run_id, front, budget)


def _pick_front_point(run_id: str, front: dict[str, Any], budget: float | None) -> str:
    """The artifact path of the point of a front run's ``front.json`` within ``budget``."""
    points = [p for p in front["points"] if p.get("artifact_path")]
    budgets = ", ".join(f"{p['budget']:.3f}" for p in points)
    if budget is None:
        raise ValueError(f"run {run_id!r} is a front: pass --budget B (its points: {budgets})")
    within = [p for p in points if within_budget(p["budget"], budget)]
    if not within:
        raise ValueError(f"no point of the front within budget {budget:g}; points: {budgets}")
    return max(within, key=lambda p: p["budget"])["artifact_path"] + "/pruned_model"


def _local_pruned_model(run_id: str, budget: float | None) -> Path | None:
    """The export of a run of a local SQLite store, read where it lies (no MLflow, no
    download); None where anything is not plainly there, for the MLflow path to handle
    (and to word its errors)."""
    from tracking.sqlite_runs import open_store

    store = open_store()
    root = None if store is None else store.artifact_dir(run_id)
    if root is None:
        return None
    front = root / "front.json"
    if front.is_file():
        path = _pick_front_point(run_id, json.loads(front.read_text()), budget)
    elif budget is not None:
        return None
    else:
        path = "pruned_model"
    src = root / path
    return src if (src / "manifest.json").is_file() else None


def _read_manifest(src: Path) -> dict[str, Any]:
    """``pruning.export.read_manifest`` without importing torch (it is a JSON file)."""
    path = src / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(src)!r} is not an hwprune export (no manifest.json)")
    return json.loads(path.read_text())


def _download_pruned_model(run_id: str, path: str = "pruned_model") -> Path:
    """The run's export at ``path``, downloaded; ``KeyError``/``ValueError`` else."""
    from tracking import TrackingError, download_artifacts, run_status

    try:
        return download_artifacts(run_id, path)
    except TrackingError as exc:
        status = run_status(run_id)
        why = (
            f"it stopped before saving one; resume it with `hwprune search --resume {run_id}` "
            "or export another run"
            if status in ("RUNNING", "KILLED", "FAILED")
            else "only a search run has one"
        )
        raise ValueError(
            f"run {run_id!r} ({status}) has no pruned model to export (no pruned_model/ "
            f"artifact): {why}"
        ) from exc


def _install_export(src: Path, out: Path) -> None:
    """Copy ``src`` to ``out`` through a hidden sibling, replacing ``out`` if it exists.

    On failure nothing half-written stays: the temporary copy is removed and an earlier
    export at ``out`` is put back.
    """
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        if not out.exists():
            tmp.rename(out)
            return
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            old.rename(out)  # the earlier export back in place
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@app.command()
def export(
    run_id: str = typer.Argument(..., help="MLflow run id of a search."),
    out: Path = typer.Option(..., "--out", help="Directory to write (must not exist)."),
    force: bool = typer.Option(
        False, help="Replace an existing directory (an earlier export, or an empty one)."
    ),
    budget: float = typer.Option(
        None, help="Front runs (search --budgets): the point for this budget."
    ),
) -> None:
    """Write the best pruned model of a search run to DIR (see README for the layout)."""
    src = downloaded = None
    try:
        _check_export_target(out, force)
        # A local store's artifacts are copied where they lie: no MLflow, no torch import.
        src = _local_pruned_model(run_id, budget)
        if src is None:
            from tracking import check_store

            check_store(writable=False)
            src = downloaded = _download_pruned_model(run_id, _front_point(run_id, budget))
        manifest = _read_manifest(src)
        _install_export(src, out)
    except OSError as exc:
        if src is not None and not isinstance(exc, FileNotFoundError):
            _fail(OSError(f"cannot write {str(out)!r}: {exc.strerror or exc}"))
        _fail(exc)
    except (KeyError, ValueError) as exc:
        _fail(exc)
    finally:
        if downloaded is not None:
            from tracking import discard_download

            discard_download(downloaded)
    policy = manifest.get("policy", {})
    test_acc = policy.get("test_accuracy", float("nan"))
    console.print(
        f"exported run {run_id} to {out}: test accuracy {test_acc:.4f}, "
        f"cost ratio {policy.get('cost_ratio', float('nan')):.4f}; files: "
        + ", ".join(manifest.get("files", {}).values())
    )


def _listing_table(*, one_line: bool, names: int) -> Table:
    """Two columns, no borders, the first ``names`` wide; ``one_line``: a description too
    long is cut with an ellipsis (``hwprune list SECTION`` shows it whole)."""
    table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 1, 0, 0))
    table.add_column("name", style="bold", no_wrap=True, min_width=names)
    table.add_column("description")
    return table


def _description(text: str, *, one_line: bool) -> Any:
    """A description cell: plain text (no markup), cut with an ellipsis if ``one_line``."""
    from rich.text import Text

    if one_line:
        return Text(text, no_wrap=True, overflow="ellipsis")
    return Text(text)


@app.command("list")
def list_(
    section: str = typer.Argument(
        None,
        metavar="[SECTION]",
        help="models, schemes, hardware, proxies or agents: that section in full "
        "(models: every torchvision model too).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: every name and its description."
    ),
) -> None:
    """List models, schemes, hardware presets, accuracy proxies and agents."""
    from agents.app.catalog import SECTIONS, check_choice, table

    if section is not None:
        try:
            check_choice("section", section, SECTIONS)
        except ValueError as exc:
            _fail(exc)
    titles = list(SECTIONS) if section is None else [section]
    names = table()  # the registries' names and descriptions, without importing them
    if as_json:
        typer.echo(json.dumps({t: names["sections"][t] for t in titles}, indent=2))
        return
    torchvision = names["torchvision"]
    one_line = section is None
    shown = [n for t in titles for n in names["sections"][t] if n not in torchvision]
    width = max(len(n) for n in [*shown, "torchvision"]) + (2 if one_line else 0)
    out = _listing_table(one_line=one_line, names=width)
    for title in titles:
        if one_line:
            out.add_row(f"[bold underline]{title}[/]", "")
        for name, desc in names["sections"][title].items():
            if name not in torchvision:
                cell = _description(desc, one_line=one_line)
                out.add_row(f"  {name}" if one_line else name, cell)
        if one_line and title == "models" and torchvision:
            summary = (
                f"{len(torchvision)} classifiers ({', '.join(torchvision[:2])}...): "
                "hwprune list models"
            )
            out.add_row("  torchvision", _description(summary, one_line=True))
    console.print(out)
    if one_line:
        console.print("in full: hwprune list SECTION; as JSON: hwprune list --json")
    elif section == "models" and torchvision:
        console.print(
            f"\n[bold]torchvision[/] ({len(torchvision)} models, weights=None: random weights "
            "unless a checkpoint is given):"
        )
        console.print(", ".join(torchvision), highlight=False)


def _register_optional_commands() -> None:
    """Commands whose modules live beside this one (cost model and profiling tools)."""
    from agents.app.commands.cost import cost_command
    from agents.app.commands.finetune import finetune_command
    from agents.app.commands.profile_cpu import profile_cpu_command
    from agents.app.commands.profile_gpu import profile_gpu_command
    from agents.app.commands.runs import compare_command, runs_command
    from agents.app.commands.train import train_command

    app.command("cost")(cost_command)
    app.command("train")(train_command)
    app.command("finetune")(finetune_command)
    app.command("runs")(runs_command)
    app.command("compare")(compare_command)
    app.command("profile-gpu")(profile_gpu_command)
    app.command("profile-cpu")(profile_cpu_command)
    from agents.app.commands.server import server_app
    from agents.app.commands.sweep import sweep_command

    app.command("sweep")(sweep_command)
    app.add_typer(server_app, name="server")


def main() -> None:
    """Console-script entry point."""
    import os

    # MLflow's INFO lines (creating tables, validating examples) are not the user's news;
    # MLflow reads this when it is first imported, which the CLI does lazily.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

    _register_optional_commands()
    app()


if __name__ == "__main__":
    main()
