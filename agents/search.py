"""The search loop: validate, build the task, run an agent, track it, export the result."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.base import get_agent, load_hyperparams
from agents.baselines import uniform_choice
from agents.finalize import pruned_model, test_accuracy
from agents.recorder import EpisodeRecord, EpisodeRecorder
from envs import REWARD_FORMS, LayerPruneEnv, PruningTask, make_env, make_task, validate_names
from envs.evaluation import DEVICES, resolve_device
from pruning.export import export_pruned
from tracking import check_experiment, check_store, plots, run_state, search_run


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; plain values so it round-trips through YAML.

    Attributes:
        model: workload name (``hwprune list``). scheme / hardware: registry names.
        metric: cost the budget is on (latency, energy, area, resources, memory, cycles);
            None: the hardware's default (latency; crossbars for ReRAM; MACs for flops).
        budget: target cost ratio versus the dense network, in (0, 1].
        agent: agent or baseline name. episodes: evaluated episodes.
        proxy: accuracy proxy of the reward. reward: reward form.
        n_envs: environments in parallel (subprocesses when > 1).
        finetune_steps: SGD steps on the final pruned model before export (0: none).
        device: where accuracy proxies evaluate: "cpu", "cuda" or "auto" (CUDA if present).
        threads: torch intra-op threads. 1 by default: the networks are small, and a
            contended thread pool made evaluations 40x slower on a busy 2-core machine.
        *_params: overrides of scheme / hardware / agent / proxy parameters.
    """

    model: str = "digits-cnn"
    scheme: str = "balanced"
    hardware: str = "accel-kang-16"
    metric: str | None = None
    budget: float = 0.5
    agent: str = "ddpg"
    episodes: int = 300
    seed: int = 0
    proxy: str = "holdout"
    reward: str = "accuracy"
    experiment: str = "hwprune"
    n_envs: int = 1
    data: str | None = None
    checkpoint: str | None = None
    finetune_steps: int = 0
    threads: int = 1
    device: str = "cpu"
    scheme_params: dict[str, Any] = field(default_factory=dict)
    hardware_params: dict[str, Any] = field(default_factory=dict)
    agent_params: dict[str, Any] = field(default_factory=dict)
    proxy_params: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Fast checks of every name, type and range; raises before any long work.

        ``KeyError`` / ``ValueError`` (``FileNotFoundError`` for a missing checkpoint)
        whose message names the bad value and the valid choices. Touches no MLflow store.
        """
        import inspect

        from agents.checks import check_fields, check_int
        from envs import PROXIES
        from hwmodels import get_hardware
        from pruning.base import check_scheme_params, get_scheme

        check_fields(
            SearchConfig, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )
        if not self.experiment.strip():
            raise ValueError(
                f"experiment name {self.experiment!r} is empty; pass --experiment NAME"
            )
        validate_names(
            model=self.model,
            scheme=self.scheme,
            hardware=self.hardware,
            metric=self.metric,
            proxy=self.proxy,
        )
        get_agent(self.agent, self.agent_params)  # names, keys and agent-side ranges
        check_scheme_params(self.scheme, self.scheme_params)
        # Cheap: parameter records, no masks. Catches types and ranges of the parameters.
        get_scheme(
            self.scheme,
            hardware=get_hardware(self.hardware, **self.hardware_params),
            **self.scheme_params,
        )
        accepted = [
            p.name
            for p in inspect.signature(PROXIES.factory(self.proxy)).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "workload"
        ]
        unknown = sorted(set(self.proxy_params) - set(accepted))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for proxy {self.proxy!r}; "
                f"valid: {', '.join(accepted) or '(none)'}"
            )
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(f"budget {self.budget} is outside (0, 1]")
        if self.reward not in REWARD_FORMS:
            raise ValueError(
                f"unknown reward {self.reward!r}; valid choices: {', '.join(REWARD_FORMS)}"
            )
        check_int("seed", self.seed, minimum=0, maximum=2**32 - 1)  # numpy's seed range
        for name in ("episodes", "n_envs", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be >= 0, got {self.finetune_steps}")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; valid choices: {', '.join(DEVICES)}")
        resolve_device(self.device)  # raises if CUDA is asked for but absent
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint {self.checkpoint!r} does not exist")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for YAML and MLflow params)."""
        return dataclasses.asdict(self)

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``envs.make_task``."""
        return {
            "model": self.model,
            "scheme": self.scheme,
            "hardware": self.hardware,
            "metric": self.metric,
            "data": self.data,
            "checkpoint": self.checkpoint,
            "seed": self.seed,
            "device": self.device,
            "scheme_params": self.scheme_params or None,
            "hardware_params": self.hardware_params or None,
        }

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``envs.make_env`` (picklable: names and numbers)."""
        return {
            **self.task_kwargs(),
            "proxy": self.proxy,
            "budget": self.budget,
            "reward": self.reward,
            "proxy_params": self.proxy_params or None,
        }


@dataclass
class SearchResult:
    """Outcome of a search, as logged in its MLflow run."""

    run_id: str
    best: EpisodeRecord
    uniform: dict[str, Any]
    best_test_accuracy: float
    uniform_test_accuracy: float
    episodes: int
    metric: str = "latency_s"
    export_dir: Path | None = None
    refined_episodes: int = 0  # the last of ``episodes`` spent refining (agents.refine)

    def summary(self) -> dict[str, float]:
        """The headline figures: best versus uniform at the same budget."""
        return {
            "best_holdout_accuracy": self.best.accuracy,
            "best_test_accuracy": self.best_test_accuracy,
            "best_cost_ratio": self.best.cost_ratio,
            "best_density": self.best.density,
            "uniform_holdout_accuracy": float(self.uniform["accuracy"]),
            "uniform_test_accuracy": self.uniform_test_accuracy,
            "uniform_cost_ratio": float(self.uniform["cost_ratio"]),
            "uniform_density": float(self.uniform["density"]),
        }


def run_params(config: SearchConfig, task: PruningTask, **extra: Any) -> dict[str, Any]:
    """What a search run records as its config: the settings and what they resolved to."""
    return {
        **config.as_dict(),
        **extra,
        "agent_hyperparams": load_hyperparams(config.agent, config.agent_params),
        "hardware_resolved": task.hardware.describe(),
        "scheme_resolved": task.scheme.describe(),
        "decisions": len(task.decisions),
        "min_cost_ratio": task.min_cost_ratio,
    }


def _subprocess_env(threads: int, kwargs: dict[str, Any]) -> LayerPruneEnv:
    """Env factory run inside a SubprocVecEnv worker (which builds its own task).

    The worker ignores SIGINT: Ctrl-C reaches the whole process group, and the parent
    must be the one to stop, so that it can close its workers and keep their results.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    return make_env(**kwargs)


def _env_factories(
    config: SearchConfig, env: LayerPruneEnv, known_scores: dict[tuple[int, ...], float]
) -> list[Callable[[], LayerPruneEnv]]:
    if config.n_envs == 1:
        return [lambda: env]
    kwargs = {**config.env_kwargs(), "known_scores": known_scores}
    worker = functools.partial(_subprocess_env, config.threads, kwargs)
    return [worker for _ in range(config.n_envs)]


def _policy_json(
    task: PruningTask, rec: dict[str, Any] | EpisodeRecord, config: SearchConfig
) -> dict[str, Any]:
    """``best_policy.json``: the policy (per-layer densities) and its figures."""
    get = (dataclasses.asdict(rec) if isinstance(rec, EpisodeRecord) else rec).get
    return {
        "model": config.model,
        "scheme": config.scheme,
        "hardware": config.hardware,
        "metric": task.metric,
        "budget": float(get("budget")),
        "holdout_accuracy": float(get("accuracy")),
        "cost_ratio": float(get("cost_ratio")),
        "density": float(get("density")),
        "densities": dict(get("densities")),
        "choice": list(get("choice")),
        "cost": dict(get("cost")),
    }


class SearchInterrupted(KeyboardInterrupt):
    """A search stopped by SIGINT or SIGTERM after saving what it had.

    Its run is KILLED in MLflow and holds every finished episode, the best policy so
    far and that policy's pruned model (not fine-tuned); ``hwprune search --resume
    RUN_ID`` continues it.
    """

    def __init__(self, signum: int, run_id: str | None = None, episodes: int = 0) -> None:
        super().__init__(signum)
        self.signum = signum
        self.run_id = run_id
        self.episodes = episodes

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM)."""
        return 128 + int(self.signum)


@dataclass(frozen=True)
class ResumeState:
    """What a resumed search replays: the run, its journal and what its store holds."""

    run_id: str
    records: list[dict[str, Any]]
    logged: int

    @property
    def known_scores(self) -> dict[tuple[int, ...], float]:
        """Proxy score of every policy the run evaluated, by choice."""
        return {tuple(r["choice"]): float(r["accuracy"]) for r in self.records}


#: Run statuses a search can be resumed from (RUNNING: the process was killed hard).
RESUMABLE = ("RUNNING", "KILLED", "FAILED")


def load_resume(run_id: str) -> tuple[SearchConfig, ResumeState]:
    """The config and journal of a run to resume; ``KeyError``/``ValueError`` if it cannot."""
    check_store()
    status, stored, records, logged = run_state(run_id)
    if status not in RESUMABLE:
        raise ValueError(
            f"run {run_id!r} is {status}; only a {', '.join(RESUMABLE)} search can be resumed"
        )
    if stored.get("budget_range") is not None:
        raise ValueError(f"run {run_id!r} is a --budgets (front) search, which cannot resume")
    fields = {k: v for k, v in stored.items() if k in SearchConfig.__dataclass_fields__}
    config = SearchConfig(**fields)
    config.validate()
    if len(records) > config.episodes:
        raise ValueError(
            f"run {run_id!r}: its journal holds {len(records)} episodes, "
            f"its config {config.episodes}"
        )
    return config, ResumeState(run_id=run_id, records=records, logged=min(logged, len(records)))


def run_search(
    config: SearchConfig,
    *,
    command: str | None = None,
    export_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    resume: ResumeState | None = None,
) -> SearchResult:
    """Run one search as an MLflow run and return its result.

    Bad names, ranges and a budget below the least achievable cost raise before the run
    starts; a failure inside the run marks it FAILED in MLflow. SIGINT and SIGTERM stop
    the search cleanly: ``SearchInterrupted`` after the run has saved what it had.
    ``resume`` (``load_resume``) continues a run: the agent replays the episodes of the
    run's journal from their recorded scores (same seed, same choices, no evaluation),
    then searches on; the result is the one the uninterrupted search would have given.
    """
    config.validate()
    if export_dir is not None and Path(export_dir).exists():
        raise FileExistsError(f"export directory {str(export_dir)!r} already exists")
    check_store()  # unreachable, unwritable or corrupt: one clear error, before any work
    if resume is None:
        check_experiment(config.experiment)
    with torch_threads(config.threads), _signals_interrupt():
        return _run_search(
            config, command=command, export_dir=export_dir, progress=progress, resume=resume
        )


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into ``SearchInterrupted`` while a search runs."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise SearchInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_search(
    config: SearchConfig,
    *,
    command: str | None,
    export_dir: str | Path | None,
    progress: Callable[[int], None] | None,
    resume: ResumeState | None,
) -> SearchResult:
    agent = get_agent(config.agent, config.agent_params)
    task = make_task(**config.task_kwargs())
    known = resume.known_scores if resume is not None else {}
    # make_env validates the budget against the task.
    env = make_env(task=task, known_scores=known, **config.env_kwargs())
    uniform = uniform_choice(task, config.budget)
    if uniform is None:
        raise ValueError(f"no uniform policy fits budget {config.budget}")
    uniform_info = env.evaluate_choice(tuple(uniform))

    run_name = f"{config.agent}-{config.scheme}-{config.hardware}-b{config.budget:g}"
    resume_id = None if resume is None else resume.run_id
    with search_run(config.experiment, run_name=run_name, resume_run_id=resume_id) as run:
        if resume is None:
            run.log_config(run_params(config, task), command=command)
            run.log_metrics(
                {
                    "uniform/holdout_accuracy": uniform_info["accuracy"],
                    "uniform/cost_ratio": uniform_info["cost_ratio"],
                    "uniform/density": uniform_info["density"],
                }
            )
            run.log_json(_policy_json(task, uniform_info, config), "uniform_policy.json")
        elif command:
            run.log_text(command + "\n", f"resumed/command-{len(resume.records)}.txt")

        recorder = EpisodeRecorder(
            sinks=[run],
            journal=run.journal,
            replay=[] if resume is None else resume.records,
            logged=0 if resume is None else resume.logged,
        )
        try:
            agent.search(
                _env_factories(config, env, known),
                episodes=config.episodes,
                recorder=recorder,
                seed=config.seed,
                progress=progress,
            )
            return _finish(run, task, agent, recorder, uniform, uniform_info, config, export_dir)
        except SearchInterrupted as exc:
            _save_interrupted(run, task, recorder, config)
            raise SearchInterrupted(exc.signum, run.run_id, recorder.episodes) from None


def _finish(
    run: Any,
    task: PruningTask,
    agent: Any,
    recorder: EpisodeRecorder,
    uniform: list[int],
    uniform_info: dict[str, Any],
    config: SearchConfig,
    export_dir: str | Path | None,
) -> SearchResult:
    """After the last episode: fine-tune, test and export the best policy into the run."""
    run.flush()
    if recorder.replay:
        run.log_metrics({"search/resumed_at_episode": len(recorder.replay)})
    best = recorder.best
    if best is None:
        raise RuntimeError("no episode ended within budget; this is a bug in the budget wall")

    best_model = pruned_model(
        task, best.choice, finetune_steps=config.finetune_steps, seed=config.seed
    )
    uniform_model = pruned_model(
        task, uniform, finetune_steps=config.finetune_steps, seed=config.seed
    )
    best_test = test_accuracy(task, best_model)
    uniform_test = test_accuracy(task, uniform_model)
    run.log_metrics(
        {
            "best/holdout_accuracy": best.accuracy,
            "best/test_accuracy": best_test,
            "best/cost_ratio": best.cost_ratio,
            "best/density": best.density,
            "best/episode": best.episode,
            "search/refine_episodes": agent.refined_episodes,
            "uniform/test_accuracy": uniform_test,
            "dense/test_accuracy": float(task.workload.meta.get("test_accuracy", float("nan"))),
        }
    )
    policy = _policy_json(task, best, config)
    policy["test_accuracy"] = best_test
    run.log_json(policy, "best_policy.json")
    _log_plots(run, recorder, best, uniform_info, config)

    manifest = {
        "run_id": run.run_id,
        "policy": policy,
        "finetune_steps": config.finetune_steps,
        "workload_meta": {k: v for k, v in task.workload.meta.items() if _plain(v)},
    }
    final_dir = _log_pruned_model(run, task, best_model, manifest, export_dir)

    return SearchResult(
        run_id=run.run_id,
        best=best,
        uniform=uniform_info,
        best_test_accuracy=best_test,
        uniform_test_accuracy=uniform_test,
        episodes=recorder.episodes,
        metric=task.metric,
        export_dir=final_dir,
        refined_episodes=agent.refined_episodes,
    )


def _save_interrupted(
    run: Any, task: PruningTask, recorder: EpisodeRecorder, config: SearchConfig
) -> None:
    """Keep what an interrupted search found: its episodes, best policy and pruned model.

    Quick on purpose (no fine-tune, no test evaluation): a scheduler's SIGTERM leaves
    seconds, not minutes. A second signal during it stops the saving, not the run's
    KILLED status.
    """
    run.flush()
    best = recorder.best
    if best is None:
        return
    policy = _policy_json(task, best, config)
    policy["interrupted_after_episodes"] = recorder.episodes
    run.log_json(policy, "best_policy.json")
    model = pruned_model(task, best.choice, finetune_steps=0, seed=config.seed)
    manifest = {"run_id": run.run_id, "policy": policy, "finetune_steps": 0}
    _log_pruned_model(run, task, model, manifest, None)


def _log_pruned_model(
    run: Any,
    task: PruningTask,
    model: torch.nn.Module,
    manifest: dict[str, Any],
    export_dir: str | Path | None,
) -> Path | None:
    """Export ``model`` into the run's ``pruned_model``, and copy it to ``export_dir``."""
    tmp = Path(tempfile.mkdtemp(prefix="hwprune-export-"))
    try:
        exported = export_pruned(
            model,
            task.workload.example_input,
            tmp / "pruned_model",
            scheme=task.scheme,
            layers=task.layers,
            manifest=manifest,
        )
        run.log_dir(exported, "pruned_model")
        if export_dir is None:
            return None
        final_dir = Path(export_dir)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(exported, final_dir)
        return final_dir
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


def _log_plots(run, recorder: EpisodeRecorder, best, uniform_info, config: SearchConfig) -> None:
    acc = [r.accuracy for r in recorder.history]
    running, top = [], float("-inf")
    for r in recorder.history:
        if r.within_budget:
            top = max(top, r.accuracy)
        running.append(top if top > float("-inf") else float("nan"))
    title = f"{config.agent}: {config.scheme} on {config.hardware}, budget {config.budget:g}"
    fig = plots.search_curve(acc, running, title=title)
    run.log_figure(fig, "plots/search_curve.png")
    plots.close(fig)
    fig = plots.policy_bars(
        {"best": best.densities, "uniform": uniform_info["densities"]}, title=title
    )
    run.log_figure(fig, "plots/policy.png")
    plots.close(fig)
