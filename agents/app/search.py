"""The search loop: validate, build the task, run an agent, track it, export the result."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.app.finalize import (
    delivered_models,
    log_pruned_model,
    logged_model_name,
    logged_model_uri,
    pruned_model,
    recovery_recipe,
    recovery_states,
)
from agents.app.search_params import SEARCH_PARAMS
from agents.app.shortlist import rescore, shortlist
from agents.base import get_agent, load_hyperparams
from agents.baselines import uniform_choice
from agents.recorder import EpisodeRecord, EpisodeRecorder, check_journal
from core import defaults
from envs import (
    REWARD_FORMS,
    TASK_FIELDS,
    LayerPruneEnv,
    PruningTask,
    TaskSpec,
    make_env,
    make_proxy,
    make_task,
    validate_names,
)
from envs.factory import least_cost_ratio_before_training
from envs.proxies.builtin import torch_threads
from envs.workloads.base import weights_digest
from envs.workloads.evaluation import DEVICES, resolve_device
from envs.workloads.recovery import RecoveryRecipe
from tracking import (
    EpisodeJournal,
    check_experiment,
    check_store,
    plots,
    run_state,
    search_run,
    state_dir,
)
from tracking.journal import JOURNAL_ARTIFACT

#: Searches that recover their result (``finetune_epochs``) on a network of at least this
#: many parameters score policies by ``RECOVERY_PROXY``: what such a user takes home is
#: the recovered accuracy, which the pruned network's holdout score ranks poorly there.
RECOVERY_PROXY_MIN_PARAMS = 1_000_000
#: A short masked fine-tune at the recovery's learning rate (measured against 3-epoch
#: recovered truths on fashion-vgg: ``bench/results/proxy_fidelity_recovered.json``).
RECOVERY_PROXY: tuple[str, dict[str, Any]] = (
    "finetune",
    {"steps": 50, "lr": defaults.RECOVERY_LR},
)


def default_proxy(
    scheme: str, *, model: str | None = None, recovering: bool = False
) -> tuple[str, dict[str, Any]]:
    """The search proxy a search uses when none is named.

    A search that recovers its result (``recovering``) on a registered ``model`` of at
    least ``RECOVERY_PROXY_MIN_PARAMS`` parameters gets ``RECOVERY_PROXY``; otherwise the
    scheme class's ``search_proxy`` and ``search_proxy_params`` (``holdout`` unless it
    says otherwise). An unknown scheme gets ``holdout``; its name is refused elsewhere.
    """
    from pruning import SCHEMES, get_scheme

    if recovering and model is not None:
        from envs.workloads.builtin import parameter_count

        count = parameter_count(model)
        if count is not None and count >= RECOVERY_PROXY_MIN_PARAMS:
            name, params = RECOVERY_PROXY
            return name, dict(params)
    if scheme not in SCHEMES.names():
        return "holdout", {}
    built = get_scheme(scheme)  # cheap: level tables are built lazily
    return built.search_proxy, dict(built.search_proxy_params)


def scheme_proxies() -> dict[str, tuple[str, dict[str, Any]]]:
    """The registered schemes whose default search proxy is not ``holdout``, with it."""
    from pruning import SCHEMES

    return {n: default_proxy(n) for n in SCHEMES.names() if default_proxy(n) != ("holdout", {})}


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search, validated once, when it is built.

    The one spec of a search: the CLI and YAML files build it with ``from_dict``, runs
    store ``as_dict`` (``config.yaml``) and ``--resume`` rebuilds it from there. A
    ``SearchConfig`` that exists has every name registered and every value of the
    right type and range, hyperparameters included; no run is created before that.

    Attributes:
        task: what is pruned and costed (``envs.TaskSpec``: model, data, checkpoint,
            scheme, hardware, metric and their parameters).
        budget: target cost ratio versus the dense network, in (0, 1].
        budgets: ``(low, high)``: train one budget-conditioned agent over that range and
            log the accuracy-cost front at ``points`` budgets instead (``agents.app.frontier``).
        agent: agent or baseline name; agent_params: its hyperparameter overrides.
        episodes: evaluated episodes. seed: seeds the search (agent and environment), not
            the workload, whose trained weights are the same for every seed.
        proxy: accuracy proxy of the reward; proxy_params: its parameters. ``None`` (the
            default) takes ``default_proxy``'s (``RECOVERY_PROXY`` when ``finetune_epochs``
            recovers a network of >= 1M parameters; else the scheme's: ``finetune`` of 5
            steps for ``channel``, ``holdout`` otherwise), merged under any
            ``proxy_params`` given; a built config holds the resolved name and parameters.
        shortlist: after the search, re-score its best ``shortlist`` distinct feasible
            policies with ``shortlist_proxy`` (``shortlist_params``) and keep the best by
            it (``agents.app.shortlist``); 0 keeps the search proxy's best. Fixed budgets only.
        reward: reward form. experiment: MLflow experiment.
        n_envs: environments in parallel (subprocesses when > 1).
        finetune_steps: SGD steps on the final pruned model before export (0: none).
        finetune_epochs: recover the best and the uniform policies' models by this many
            epochs of masked training (``envs.workloads.recovery``: cosine schedule, the workload's
            augmentation) before they are tested, exported and registered (0: none).
        distill: distil the recovery from the dense model (knowledge distillation).
        gradual: share of the recovery over which the masks go from dense to the policy's
            (``RecoveryRecipe.gradual``); 0: the policy's masks from the first step.
        threads: torch intra-op threads of the search. 1 by default: the networks are
            small, and a contended thread pool made evaluations 40x slower on a busy 2-core
            machine. Recovery trains with every usable core (``recovery_threads``).
        device: where accuracy proxies evaluate: "cpu", "cuda" or "auto" (CUDA if present).
    """

    task: TaskSpec = field(default_factory=TaskSpec)
    budget: float = SEARCH_PARAMS.default("budget")
    budgets: tuple[float, float] | None = None
    points: int = SEARCH_PARAMS.default("points")
    agent: str = SEARCH_PARAMS.default("agent")
    agent_params: dict[str, Any] = field(default_factory=dict)
    episodes: int = SEARCH_PARAMS.default("episodes")
    seed: int = SEARCH_PARAMS.default("seed")
    proxy: str | None = SEARCH_PARAMS.default("proxy")
    proxy_params: dict[str, Any] = field(default_factory=dict)
    shortlist: int = SEARCH_PARAMS.default("shortlist")
    shortlist_proxy: str = SEARCH_PARAMS.default("shortlist_proxy")
    shortlist_params: dict[str, Any] = field(default_factory=dict)
    reward: str = SEARCH_PARAMS.default("reward")
    experiment: str = SEARCH_PARAMS.default("experiment")
    n_envs: int = SEARCH_PARAMS.default("n_envs")
    finetune_steps: int = SEARCH_PARAMS.default("finetune_steps")
    finetune_epochs: int = SEARCH_PARAMS.default("finetune_epochs")
    distill: bool = SEARCH_PARAMS.default("distill")
    gradual: float = SEARCH_PARAMS.default("gradual")
    threads: int = SEARCH_PARAMS.default("threads")
    device: str = SEARCH_PARAMS.default("device")

    def __post_init__(self) -> None:
        if self.budgets is not None:  # YAML and JSON carry a list
            object.__setattr__(self, "budgets", tuple(self.budgets))
        if self.proxy is None and isinstance(self.task, TaskSpec):
            name, params = default_proxy(
                self.task.scheme,
                model=self.task.model,
                recovering=bool(self.finetune_epochs),
            )
            object.__setattr__(self, "proxy", name)
            if isinstance(self.proxy_params, Mapping):
                object.__setattr__(self, "proxy_params", {**params, **self.proxy_params})
        # The defaults that choose an evaluation (holdout's precision) are stored too.
        from envs.proxies.builtin import resolved_proxy_params

        for name, key in ((self.proxy, "proxy_params"), (self.shortlist_proxy, "shortlist_params")):
            params = getattr(self, key)
            if isinstance(name, str) and isinstance(params, Mapping):
                object.__setattr__(self, key, resolved_proxy_params(name, params))
        self.validate()

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any], *, where: str = "") -> SearchConfig:
        """Build from a mapping, nested (``task: {model: ...}``) or flat (``model: ...``).

        ``ValueError`` (prefixed by ``where``, e.g. ``"config file 'a.yml': "``) for an
        unknown key or a value of the wrong type; then the checks of ``validate``.
        """
        from agents.checks import check_fields

        values = dict(settings)
        nested = values.pop("task", None) or {}
        if not isinstance(nested, Mapping):
            raise ValueError(f"{where}task must be a mapping of KEY: VALUE, got {nested!r}")
        task = {**{k: values.pop(k) for k in TASK_FIELDS if k in values}, **nested}
        valid = sorted({*SEARCH_FIELDS, *TASK_FIELDS, "task"})
        unknown = sorted(str(k) for k in [*values, *task] if k not in valid)
        if unknown:
            raise ValueError(
                f"{where}unknown setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        check_fields(TaskSpec, task, where=where)
        check_fields(cls, values, where=where)
        if not where:
            return cls(task=TaskSpec(**task), **values)
        try:
            return cls(task=TaskSpec(**task), **values)
        except (KeyError, ValueError) as exc:  # ranges and names, named with the file
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise type(exc)(f"{where}{message}") from None

    def validate(self) -> None:
        """Fast checks of every name, type and range; raises before any long work.

        ``KeyError`` / ``ValueError`` (``FileNotFoundError`` for a missing checkpoint)
        whose message names the bad value and the valid choices. Touches no MLflow store.
        """
        from agents.checks import check_fields
        from envs.proxies.builtin import check_proxy_params

        if not isinstance(self.task, TaskSpec):
            raise ValueError(f"task must be a TaskSpec, got {self.task!r}")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["task"]
        check_fields(SearchConfig, fields)
        # Types and ranges of the scalar settings, before any name is looked up.
        SEARCH_PARAMS.check({k: v for k, v in fields.items() if k in SEARCH_PARAMS})
        if not self.experiment.strip():
            raise ValueError(
                f"experiment name {self.experiment!r} is empty; pass --experiment NAME"
            )
        validate_names(proxy=self.proxy)
        get_agent(self.agent, self.agent_params)  # names, keys and agent-side ranges
        check_proxy_params(self.proxy, self.proxy_params)
        try:
            validate_names(proxy=self.shortlist_proxy)
            check_proxy_params(self.shortlist_proxy, self.shortlist_params)
        except (KeyError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise type(exc)(f"shortlist_proxy {self.shortlist_proxy!r}: {message}") from None
        if self.budgets is not None:
            low, high = self.budgets
            if not 0.0 < low < high <= 1.0:
                raise ValueError(
                    f"budgets {low:g}:{high:g} must satisfy 0 < LOW < HIGH <= 1 (e.g. 0.3:0.8)"
                )
            if self.shortlist:
                raise ValueError(
                    f"shortlist {self.shortlist} applies to a fixed-budget search; a search "
                    "over budgets (budgets LOW:HIGH) keeps each budget's best: pass shortlist 0"
                )
        if self.reward not in REWARD_FORMS:
            raise ValueError(
                f"unknown reward {self.reward!r}; valid choices: {', '.join(REWARD_FORMS)}"
            )
        if self.shortlist > self.episodes:
            raise ValueError(
                f"shortlist {self.shortlist} must be <= episodes {self.episodes}: it "
                "re-scores the search's best distinct policies"
            )
        if self.finetune_epochs and self.finetune_steps:
            raise ValueError(
                f"finetune_epochs {self.finetune_epochs} and finetune_steps "
                f"{self.finetune_steps} both fine-tune the result: pass one of them"
            )
        for name in ("distill", "gradual"):
            if getattr(self, name) and not self.finetune_epochs:
                raise ValueError(f"{name} applies to recovery: pass finetune_epochs N (N >= 1)")
        if self.device not in DEVICES:
            raise ValueError(f"unknown device {self.device!r}; valid choices: {', '.join(DEVICES)}")
        resolve_device(self.device)  # raises if CUDA is asked for but absent

    def recovery_recipe(self, task: PruningTask) -> RecoveryRecipe | None:
        """How the search's results are recovered (None: not at all): ``finetune_epochs``
        of the workload's own augmentation, distilled and ramped as configured."""
        if not self.finetune_epochs:
            return None
        return recovery_recipe(
            task,
            epochs=self.finetune_epochs,
            distill=self.distill,
            gradual=self.gradual,
            seed=self.seed,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (``config.yaml``, MLflow params); ``from_dict`` reads it back."""
        out = {**dataclasses.asdict(self), "task": self.task.as_dict()}
        if self.budgets is not None:
            out["budgets"] = list(self.budgets)
        return out

    def build_env(
        self,
        task: PruningTask | None = None,
        *,
        known_scores: Mapping[tuple[int, ...], float] | None = None,
    ) -> LayerPruneEnv:
        """This search's environment (on ``task`` if given, else on one built here)."""
        return make_env(
            self.task if task is None else task,
            proxy=self.proxy,
            proxy_params=self.proxy_params,
            budget=self.budget,
            budget_range=self.budgets,
            reward=self.reward,
            device=self.device,
            known_scores=known_scores,
        )

    def build_task(self) -> PruningTask:
        """This search's ``PruningTask``: the workload's own trained weights, whatever the
        search's seed (a search seed that picked the model would retrain fashion-vgg for an
        hour and prune another network than the one the user trained)."""
        return make_task(self.task, device=self.device)


#: Top-level field names of ``SearchConfig`` (the task's are in ``envs.TASK_FIELDS``).
SEARCH_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SearchConfig) if f.name != "task"
)


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
    dense_holdout_accuracy: float = float("nan")
    dense_test_accuracy: float = float("nan")
    finetune_steps: int = 0  # fine-tune of the best and uniform models before their test
    experiment_id: str = ""
    finetune_epochs: int = 0  # recovery epochs of the best and uniform models
    best_test_before_recovery: float = float("nan")
    uniform_test_before_recovery: float = float("nan")
    proxy: str = "holdout"
    model_uri: str | None = None
    """The logged MLflow model (``runs:/RUN_ID/WORKLOAD-SCHEME-HARDWARE``); None where the
    data cannot say how raw images are prepared (no model is logged)."""

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
            "dense_holdout_accuracy": self.dense_holdout_accuracy,
            "dense_test_accuracy": self.dense_test_accuracy,
            "best_test_accuracy_before_recovery": self.best_test_before_recovery,
            "uniform_test_accuracy_before_recovery": self.uniform_test_before_recovery,
        }


def run_params(config: SearchConfig, task: PruningTask, **extra: Any) -> dict[str, Any]:
    """What a search run records as its config: the settings and what they resolved to."""
    return {
        **config.as_dict(),
        **extra,
        "agent_hyperparams": load_hyperparams(config.agent, config.agent_params),
        "hardware_resolved": task.hardware.describe(),
        "scheme_resolved": task.scheme.describe(),
        "metric_resolved": task.metric,
        "decisions": len(task.decisions),
        "min_cost_ratio": task.min_cost_ratio,
        "workload_digest": weights_digest(task.workload.model),
    }


def _subprocess_env(
    config: SearchConfig, known_scores: dict[tuple[int, ...], float]
) -> LayerPruneEnv:
    """Env factory run inside a SubprocVecEnv worker (which builds its own task).

    The worker ignores SIGINT: Ctrl-C reaches the whole process group, and the parent
    must be the one to stop, so that it can close its workers and keep their results.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(config.threads)
    return config.build_env(known_scores=known_scores)


def env_factories(
    config: SearchConfig, env: LayerPruneEnv, known_scores: dict[tuple[int, ...], float]
) -> list[Callable[[], LayerPruneEnv]]:
    """``env`` itself, or ``config.n_envs`` picklable factories for subprocess workers."""
    if config.n_envs == 1:
        return [lambda: env]
    worker = functools.partial(_subprocess_env, config, known_scores)
    return [worker for _ in range(config.n_envs)]


def _policy_json(
    task: PruningTask, rec: dict[str, Any] | EpisodeRecord, config: SearchConfig
) -> dict[str, Any]:
    """``best_policy.json``: the policy (per-layer densities) and its figures."""
    get = (dataclasses.asdict(rec) if isinstance(rec, EpisodeRecord) else rec).get
    return {
        "model": config.task.model,
        "scheme": config.task.scheme,
        "hardware": config.task.hardware,
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

    def __init__(
        self,
        signum: int,
        run_id: str | None = None,
        episodes: int = 0,
        *,
        recovery_kept: bool = False,
    ) -> None:
        super().__init__(signum)
        self.signum = signum
        self.run_id = run_id
        self.episodes = episodes
        self.recovery_kept = recovery_kept
        """It stopped in a recovery, whose finished epochs ``--resume`` continues from."""

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
    workload_digest: str | None = None
    """sha256 of the weights the run searched (None: a run recorded before it was kept)."""

    def check_workload(self, config: SearchConfig, task: PruningTask) -> None:
        """``ValueError`` unless ``task``'s weights are those the run searched: the journal's
        scores are of that model, and mixing them with another's is a silent wrong result."""
        if self.workload_digest is None:
            # Before the digest, a search's seed also seeded the workload's training.
            if config.seed != 0 and config.task.checkpoint is None:
                raise ValueError(
                    f"run {self.run_id!r} (seed {config.seed}) searched a "
                    f"{config.task.model} trained with seed {config.seed}: searches no longer "
                    "retrain the workload per seed, so its journal cannot be replayed on "
                    "the recipe's weights; start a new search (the run keeps its results)"
                )
            return
        actual = weights_digest(task.workload.model)
        if actual != self.workload_digest:
            raise ValueError(
                f"run {self.run_id!r} searched {config.task.model} weights with sha256 "
                f"{self.workload_digest[:16]}, but this machine's are {actual[:16]} "
                "(retrained, another checkpoint or another torch): its journal's scores "
                "are of the other model; start a new search"
            )

    @property
    def known_scores(self) -> dict[tuple[int, ...], float]:
        """Proxy score of every policy the run evaluated, by choice."""
        return {tuple(r["choice"]): float(r["accuracy"]) for r in self.records}


#: Run statuses a search can be resumed from (RUNNING: the process was killed hard).
RESUMABLE = ("RUNNING", "KILLED", "FAILED")
#: The search's full summary (every policy's holdout, test, cost ratio and density).
SUMMARY = "summary.md"


def load_resume(run_id: str) -> tuple[SearchConfig, ResumeState]:
    """The config and journal of a run to resume; ``KeyError``/``ValueError`` if it cannot."""
    check_store()
    status, stored, records, logged = run_state(run_id)
    if status not in RESUMABLE:
        raise ValueError(
            f"run {run_id!r} is {status}; only a {', '.join(RESUMABLE)} search can be resumed"
        )
    if stored.get("budget_range") is not None:  # written before fronts were resumable
        raise ValueError(f"run {run_id!r} is an older --budgets search, which cannot resume")
    # A run stored before holdout had a precision scored in fp32: it resumes so.
    params = stored.get("proxy_params")
    if stored.get("proxy") in ("holdout", "holdout-energy") and isinstance(params, Mapping):
        if "precision" not in params:
            stored = {**stored, "proxy_params": {**params, "precision": "fp32"}}
    # config.yaml also records what the settings resolved to (agent_hyperparams, ...).
    known = {*SEARCH_FIELDS, *TASK_FIELDS, "task"}
    config = SearchConfig.from_dict(
        {k: v for k, v in stored.items() if k in known}, where=f"run {run_id!r} config: "
    )
    local = EpisodeJournal.for_run(run_id).path
    where = (
        f"the journal of run {run_id!r} ({str(local) if local.exists() else JOURNAL_ARTIFACT!r})"
    )
    check_journal(records, where)
    if len(records) > config.episodes:
        raise ValueError(
            f"run {run_id!r}: its journal holds {len(records)} episodes, "
            f"its config {config.episodes}"
        )
    digest = stored.get("workload_digest")
    return config, ResumeState(
        run_id=run_id,
        records=records,
        logged=min(logged, len(records)),
        workload_digest=str(digest) if digest else None,
    )


def run_search(
    config: SearchConfig,
    *,
    command: str | None = None,
    export_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    resume: ResumeState | None = None,
    register: str | None = None,
    recovery_progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> SearchResult:
    """Run one fixed-budget search as an MLflow run and return its result.

    With ``config.finetune_epochs``, ``recovery_progress(label, total_steps)`` is asked
    for a per-step callback before each recovery (``"best"``, then ``"uniform"``).

    Bad names, ranges and a budget below the least achievable cost raise before the run
    starts; a failure inside the run marks it FAILED in MLflow. SIGINT and SIGTERM stop
    the search cleanly: ``SearchInterrupted`` after the run has saved what it had.
    ``resume`` (``load_resume``) continues a run: the agent replays the episodes of the
    run's journal from their recorded scores (same seed, same choices, no evaluation),
    then searches on; the result is the one the uninterrupted search would have given.
    The best pruned model is logged as an MLflow pyfunc model
    (``runs:/RUN_ID/WORKLOAD-SCHEME-HARDWARE``: raw images in, classes out) and, with
    ``register``, registered under that name.
    """
    if config.budgets is not None:
        raise ValueError("a search over a budget range runs with agents.app.frontier.run_frontier")
    kind = FixedBudget(
        export_dir=export_dir, register=register, recovery_progress=recovery_progress
    )
    return run_kind(config, kind, command=command, progress=progress, resume=resume)


class SearchKind(ABC):
    """What tells one kind of search from another (a fixed budget, a front): the
    template methods of ``run_kind``, which owns everything they share (checks, the run,
    the config, the journal and recorder, the agent, interruption and resume)."""

    def __init__(
        self,
        *,
        export_dir: str | Path | None = None,
        recovery_progress: Callable[[str, int], Callable[[int], None]] | None = None,
    ) -> None:
        self.export_dir = None if export_dir is None else Path(export_dir)
        #: ``recovery_progress(label, total_steps)``: a per-step callback for each
        #: recovery (``config.finetune_epochs``), or None.
        self.recovery_progress = recovery_progress

    @abstractmethod
    def run_name(self, config: SearchConfig) -> str:
        """The MLflow run name."""

    def prepare(self, config: SearchConfig, task: PruningTask, env: LayerPruneEnv) -> None:
        """Checks and references computed before the run exists (raise to refuse)."""
        return None

    def log_start(self, run: Any, config: SearchConfig, task: PruningTask) -> None:
        """What a new run records before its first episode."""
        return None

    @abstractmethod
    def finish(
        self,
        run: Any,
        config: SearchConfig,
        task: PruningTask,
        agent: Any,
        recorder: EpisodeRecorder,
        env: LayerPruneEnv,
    ) -> Any:
        """After the last episode: evaluate, export and log the result; return it."""


def run_kind(
    config: SearchConfig,
    kind: SearchKind,
    *,
    command: str | None = None,
    progress: Callable[[int], None] | None = None,
    resume: ResumeState | None = None,
) -> Any:
    """The one search skeleton: check, build, start the run, search, finish (``kind``)."""
    check_outputs(kind.export_dir)
    if resume is None:  # before the store: a new store's creation takes seconds
        check_budget_before_training(config)
    check_store()  # unreachable, unwritable or corrupt: one clear error, before any work
    if resume is None:
        check_experiment(config.experiment)
    with torch_threads(config.threads), signals_interrupt():
        return _run(config, kind, command=command, progress=progress, resume=resume)


#: How far below the untrained architecture's least cost ratio a budget must lie to be
#: refused before training. Where a cost model scores where kept weights fall, trained
#: weights can reach lower: unstructured masks on accel-kang-16 reached 0.252 trained
#: against 0.270 untrained on digits-cnn (7% lower); structured schemes measured equal.
PRECHECK_SLACK = 0.15


def check_budget_before_training(config: SearchConfig) -> None:
    """``ValueError`` for a budget clearly below what the architecture can reach, found
    before the workload is trained or loaded (a borderline one is checked exactly by the
    environment once it is)."""
    low = config.budget if config.budgets is None else config.budgets[0]
    least = least_cost_ratio_before_training(config.task)
    if low < least * (1 - PRECHECK_SLACK):
        raise ValueError(
            f"budget {low:g} is below the least achievable cost ratio, about {least:.4f} "
            f"for {config.task.scheme!r} on {config.task.hardware!r} (from the architecture, "
            f"before training); use a budget of at least {least:.2f}"
        )


def check_outputs(export_dir: str | Path | None) -> None:
    """Before any work: every folder a search writes can be written, or ``ValueError``
    (``FileExistsError`` for an existing export directory) naming it.

    The folders are the export directory (it must not exist yet) and the episode
    journals' state directory (``$HWPRUNE_STATE_DIR``); the store is ``check_store``'s.
    """
    from agents.checks import check_output_dir

    if export_dir is not None:
        check_output_dir(export_dir, "export directory", may_exist=False)
    check_output_dir(state_dir(), "state directory (HWPRUNE_STATE_DIR) of the journals")


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
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


def _run(
    config: SearchConfig,
    kind: SearchKind,
    *,
    command: str | None,
    progress: Callable[[int], None] | None,
    resume: ResumeState | None,
) -> Any:
    agent = get_agent(config.agent, config.agent_params)
    task = config.build_task()
    if resume is not None:
        resume.check_workload(config, task)
    known = resume.known_scores if resume is not None else {}
    env = config.build_env(task, known_scores=known)  # checks the budget(s) against the task
    kind.prepare(config, task, env)
    if known and hasattr(env.proxy, "note_scores"):
        # A racing proxy stops policies clearly below its best score so far: the replayed
        # episodes count, as they did before the interruption (this process's env only).
        env.proxy.note_scores(known.values())
    resume_id = None if resume is None else resume.run_id
    with search_run(
        config.experiment, run_name=kind.run_name(config), resume_run_id=resume_id
    ) as run:
        if resume is None:
            run.log_config(run_params(config, task), command=command)
            _log_data(run, task.workload)
            kind.log_start(run, config, task)
        elif command:
            run.log_text(command + "\n", f"resumed/command-{len(resume.records)}.txt")
        recorder = EpisodeRecorder(
            sinks=[run],
            journal=run.journal,
            replay=[] if resume is None else resume.records,
            logged=0 if resume is None else resume.logged,
            log_budget=config.budgets is not None,
        )
        try:
            agent.search(
                env_factories(config, env, known),
                episodes=config.episodes,
                recorder=recorder,
                seed=config.seed,
                progress=progress,
            )
            run.flush()
            if recorder.replay:
                run.log_metrics({"search/resumed_at_episode": len(recorder.replay)})
            result = kind.finish(run, config, task, agent, recorder, env)
            shutil.rmtree(recovery_states(run), ignore_errors=True)  # the result is logged
            return result
        except SearchInterrupted as exc:
            _save_interrupted(run, task, recorder, config)
            kept = any(recovery_states(run).glob("*.pt"))
            raise SearchInterrupted(
                exc.signum, run.run_id, recorder.episodes, recovery_kept=kept
            ) from None


class FixedBudget(SearchKind):
    """One budget: the best policy against the uniform one and dense, exported."""

    def __init__(
        self,
        *,
        export_dir: str | Path | None = None,
        register: str | None = None,
        recovery_progress: Callable[[str, int], Callable[[int], None]] | None = None,
    ) -> None:
        super().__init__(export_dir=export_dir, recovery_progress=recovery_progress)
        self.register = register

    def run_name(self, config: SearchConfig) -> str:
        """``ddpg-balanced-accel-kang-16-b0.5-s0``."""
        return (
            f"{config.agent}-{config.task.scheme}-{config.task.hardware}"
            f"-b{config.budget:g}-s{config.seed}"
        )

    def prepare(self, config: SearchConfig, task: PruningTask, env: LayerPruneEnv) -> None:
        """The uniform policy at the budget (else refuse) and the dense network's score."""
        uniform = uniform_choice(task, config.budget)
        if uniform is None:
            raise ValueError(f"no uniform policy fits budget {config.budget}")
        self.uniform = uniform
        self.uniform_info = env.evaluate_choice(tuple(uniform))
        self.uniform_info["dense_holdout"] = env.score(task.dense_choice)

    def log_start(self, run: Any, config: SearchConfig, task: PruningTask) -> None:
        """The references: uniform and dense."""
        info = self.uniform_info
        run.log_metrics(
            {
                "uniform/holdout_accuracy": info["accuracy"],
                "uniform/cost_ratio": info["cost_ratio"],
                "uniform/density": info["density"],
                "dense/holdout_accuracy": info["dense_holdout"],
            }
        )
        run.log_json(_policy_json(task, info, config), "uniform_policy.json")

    def finish(
        self,
        run: Any,
        config: SearchConfig,
        task: PruningTask,
        agent: Any,
        recorder: EpisodeRecorder,
        env: LayerPruneEnv,
    ) -> SearchResult:
        """Fine-tune, test and export the best policy into the run."""
        return _finish(
            run,
            task,
            agent,
            recorder,
            self.uniform,
            self.uniform_info,
            config,
            self.export_dir,
            self.register,
            self.recovery_progress,
        )


def _finish(
    run: Any,
    task: PruningTask,
    agent: Any,
    recorder: EpisodeRecorder,
    uniform: list[int],
    uniform_info: dict[str, Any],
    config: SearchConfig,
    export_dir: str | Path | None,
    register: str | None,
    recovery_progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> SearchResult:
    """After the last episode: recover or fine-tune, test and export the best policy."""
    best = recorder.best
    if best is None:
        raise RuntimeError("no episode ended within budget; this is a bug in the budget wall")
    if config.shortlist:
        best = _shortlist_pick(run, task, recorder, config)

    recipe = config.recovery_recipe(task)
    if recipe is not None:
        run.log_json(recipe.as_dict(), "recovery.json")
    # A best that is the uniform policy (a budget only it meets) is recovered once.
    delivered = delivered_models(
        task,
        {"best": best.choice, "uniform": uniform},
        finetune_steps=config.finetune_steps,
        recipe=recipe,
        seed=config.seed,
        progress=recovery_progress,
        states=recovery_states(run),
    )
    before = {who: d.before for who, d in delivered.items()}
    if recipe is not None:
        run.log_metrics({f"{who}/test_accuracy_before_recovery": b for who, b in before.items()})
    best_model = delivered["best"].model
    best_test, uniform_test = delivered["best"].after, delivered["uniform"].after
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
    if config.finetune_epochs:
        policy["test_accuracy_before_recovery"] = before["best"]
        policy["recovery_epochs"] = config.finetune_epochs
        policy["distilled"] = config.distill
    run.log_json(policy, "best_policy.json")
    _log_plots(run, recorder, best, uniform_info, config, refined=agent.refined_episodes)
    dense_test = float(task.workload.meta.get("test_accuracy", float("nan")))

    final_dir = log_pruned_model(
        run,
        task,
        best_model,
        policy=policy,
        finetune_steps=config.finetune_steps,
        export_dir=export_dir,
        register=register,
        tags=_model_tags(config, policy),
        spec=config.task,
        extra={"recovery": recipe.as_dict()} if config.finetune_epochs else None,
    )

    result = SearchResult(
        run_id=run.run_id,
        best=best,
        uniform=uniform_info,
        best_test_accuracy=best_test,
        uniform_test_accuracy=uniform_test,
        episodes=recorder.episodes,
        metric=task.metric,
        export_dir=final_dir,
        refined_episodes=agent.refined_episodes,
        dense_holdout_accuracy=float(uniform_info["dense_holdout"]),
        dense_test_accuracy=dense_test,
        finetune_steps=config.finetune_steps,
        experiment_id=run.run.info.experiment_id,
        finetune_epochs=config.finetune_epochs,
        best_test_before_recovery=before["best"],
        uniform_test_before_recovery=before["uniform"],
        proxy=str(config.proxy),
        model_uri=logged_model_uri(run.run_id, task),
    )
    summary = summary_markdown(config, result, model_name=logged_model_name(task))
    run.log_text(summary + "\n", SUMMARY)
    run.set_description(run_description(config, result, summary))
    return result


def _shortlist_pick(
    run: Any, task: PruningTask, recorder: EpisodeRecorder, config: SearchConfig
) -> EpisodeRecord:
    """The best of the search's shortlist by ``config.shortlist_proxy``, logged as
    ``shortlist.json`` (every candidate, both scores) and ``shortlist/*`` metrics."""
    params = {"device": config.device, **config.shortlist_params}
    proxy = make_proxy(task, config.shortlist_proxy, **params)
    candidates = shortlist(recorder.history, config.shortlist)
    ranked = rescore(candidates, lambda choice: proxy.evaluate(task.masks(tuple(choice))))
    pick = ranked[0]
    run.log_json(
        {
            "proxy": config.shortlist_proxy,
            "params": config.shortlist_params,
            "candidates": [
                {
                    "search_rank": r.rank,
                    "episode": r.record.episode,
                    "search_accuracy": r.record.accuracy,
                    "shortlist_accuracy": r.score,
                    "cost_ratio": r.record.cost_ratio,
                    "choice": r.record.choice,
                }
                for r in ranked
            ],
        },
        "shortlist.json",
    )
    by_rank = {r.rank: r.score for r in ranked}
    run.log_metrics(
        {
            "shortlist/size": len(ranked),
            "shortlist/pick_search_rank": pick.rank,
            "shortlist/pick_accuracy": pick.score,
            "shortlist/search_best_accuracy": by_rank[0],
        }
    )
    return pick.record


def summary_markdown(config: SearchConfig, result: SearchResult, *, model_name: str) -> str:
    """The search's summary (``SUMMARY`` artifact): a headline (best, dense and uniform
    test accuracy, cost ratio), what was searched, every policy's figures and what it
    found; ``model_name`` is the logged MLflow model's."""
    s = result.summary()
    tuned = f" after {result.finetune_steps} fine-tune steps" if result.finetune_steps else ""
    recovered = bool(result.finetune_epochs)
    rows = [
        ("dense", s["dense_holdout_accuracy"], s["dense_test_accuracy"], 1.0, 1.0, None),
        (f"{config.agent} (best)", s["best_holdout_accuracy"], s["best_test_accuracy"],
         s["best_cost_ratio"], s["best_density"], s["best_test_accuracy_before_recovery"]),
        ("uniform", s["uniform_holdout_accuracy"], s["uniform_test_accuracy"],
         s["uniform_cost_ratio"], s["uniform_density"],
         s["uniform_test_accuracy_before_recovery"]),
    ]  # fmt: skip
    holdout = f"holdout acc ({result.proxy} proxy)"
    if recovered:
        header = (
            f"| policy | {holdout} | test acc, pruned | test acc, recovered "
            f"({result.finetune_epochs} ep) | cost ratio | density |"
        )
        table = [
            header,
            "|---|---|---|---|---|---|",
            *(
                f"| {n} | {h:.4f} | {'-' if b is None else f'{b:.4f}'} | {t:.4f} | "
                f"{c:.4f} | {d:.4f} |"
                for n, h, t, c, d, b in rows
            ),
        ]
    else:
        table = [
            f"| policy | {holdout} | test acc{tuned} | cost ratio | density |",
            "|---|---|---|---|---|",
            *(f"| {n} | {h:.4f} | {t:.4f} | {c:.4f} | {d:.4f} |" for n, h, t, c, d, _ in rows),
        ]
    after = "recovered" if recovered else ("fine-tuned" if result.finetune_steps else "pruned")
    headline = (
        f"**Best: test {100 * s['best_test_accuracy']:.2f}% ({after}) at cost ratio "
        f"{s['best_cost_ratio']:.3f}** ({result.metric}) · dense "
        f"{100 * s['dense_test_accuracy']:.2f}% · uniform {100 * s['uniform_test_accuracy']:.2f}% "
        f"at {s['uniform_cost_ratio']:.3f}"
    )
    lines = [
        headline,
        "",
        f"**{config.task.scheme}** pruning of **{config.task.model}** for "
        f"**{config.task.hardware}**, {result.metric} budget **{config.budget:g}** of dense; "
        f"{config.agent}, {result.episodes} episodes, seed {config.seed}. "
        f"Exported model: {fine_tune_label(config)}.",
        "",
        *table,
        "",
        f"Best found at episode {result.best.episode}"
        + (
            f" (the best of the search's {config.shortlist} best policies re-scored by "
            f"{config.shortlist_proxy})"
            if config.shortlist
            else ""
        )
        + (
            f"; the last {result.refined_episodes} episodes refined it."
            if result.refined_episodes
            else "."
        )
        + f" Plots: `plots/`; the pruned model: `{model_name}` (MLflow) and "
        "`pruned_model/` (export).",
    ]
    return "\n".join(lines)


def run_description(config: SearchConfig, result: SearchResult, summary: str) -> str:
    """The run's description in the MLflow UI: the headline of ``summary`` (best, dense
    and uniform test accuracy, cost ratio) over the compact search curve. The UI shows
    about 100 px of a description and fades and folds the rest behind "Show more", so it
    holds only what fits there; the full table is the ``SUMMARY`` artifact (the run's
    name and parameters say what was searched)."""
    curve = f"get-artifact?path={plots.COMPACT_CURVE}&run_uuid={result.run_id}"
    headline = summary.splitlines()[0]
    return "\n".join(
        [
            f"{headline} · every policy: `{SUMMARY}`",
            f"![holdout accuracy per episode, best so far, dense and uniform]({curve})",
        ]
    )


def _save_interrupted(
    run: Any, task: PruningTask, recorder: EpisodeRecorder, config: SearchConfig
) -> None:
    """Keep what an interrupted search found: its episodes, best policy and pruned model.

    Quick on purpose (no fine-tune, no test evaluation): a scheduler's SIGTERM leaves
    seconds, not minutes. A second signal during it stops the saving, not the run's
    KILLED status.
    """
    recorder.catch_up()  # the episode the signal cut short, journaled but not yet sent
    run.flush()
    best = recorder.best
    if best is None:
        return
    policy = _policy_json(task, best, config)
    policy["interrupted_after_episodes"] = recorder.episodes
    run.log_json(policy, "best_policy.json")
    model = pruned_model(task, best.choice, finetune_steps=0, seed=config.seed)
    log_pruned_model(run, task, model, policy=policy, finetune_steps=0, spec=config.task)


def _model_tags(config: SearchConfig, policy: dict[str, Any]) -> dict[str, str]:
    """Tags of a registered model version: what it was pruned for, and how it scores."""
    tags = {
        "model": config.task.model,
        "scheme": config.task.scheme,
        "hardware": config.task.hardware,
        "metric": str(policy.get("metric")),
        "budget": f"{config.budget:g}",
        "agent": config.agent,
    }
    for key in ("cost_ratio", "holdout_accuracy", "test_accuracy", "density"):
        if key in policy:
            tags[key] = f"{float(policy[key]):.4f}"
    tags["fine_tuned"] = fine_tune_label(config)
    return tags


def fine_tune_label(config: SearchConfig) -> str:
    """How the result was trained after pruning, in words (model tags, descriptions)."""
    if config.finetune_epochs:
        kd = ", distilled from dense" if config.distill else ""
        ramp = f", masks reached over the first {config.gradual:.0%}" if config.gradual else ""
        return f"recovered: {config.finetune_epochs} epochs, masks fixed, cosine{kd}{ramp}"
    if config.finetune_steps:
        return f"fine-tuned: {config.finetune_steps} steps, masks fixed"
    return "no: BatchNorm re-estimated only"


#: Images of each split logged as a dataset input (MLflow digests the first 10,000 rows).
DATASET_ROWS = 10_000


def _log_data(run: Any, workload: Any) -> None:
    """The holdout (the search scores on it) and test (the final figures) splits as MLflow
    dataset inputs, named after the data source."""
    from envs.workloads.evaluation import dataset_tensors

    provenance = str(workload.meta.get("data", workload.name))
    name = provenance.split(":")[0]
    for context, split in (("holdout", workload.holdout), ("test", workload.test)):
        x, y = dataset_tensors(split, limit=DATASET_ROWS)
        run.log_dataset(
            x.numpy(), y.numpy(), name=f"{name}-{context}", context=context, provenance=provenance
        )


def _log_plots(
    run: Any,
    recorder: EpisodeRecorder,
    best: EpisodeRecord,
    uniform_info: dict[str, Any],
    config: SearchConfig,
    *,
    refined: int = 0,
) -> None:
    acc = [r.accuracy for r in recorder.history]
    running, top = [], float("-inf")
    for r in recorder.history:
        if r.within_budget:
            top = max(top, r.accuracy)
        running.append(top if top > float("-inf") else float("nan"))
    title = (
        f"{config.agent}: {config.task.scheme} on {config.task.hardware}, budget {config.budget:g}"
    )
    fig = plots.search_curve(
        acc,
        running,
        title=title,
        references={
            "dense": float(uniform_info["dense_holdout"]),
            "uniform policy": float(uniform_info["accuracy"]),
        },
        refine_from=len(acc) - refined if refined else None,
    )
    run.log_figure(fig, "plots/search_curve.png")
    plots.close(fig)
    fig = plots.compact_curve(
        acc,
        running,
        references={
            "dense": float(uniform_info["dense_holdout"]),
            "uniform": float(uniform_info["accuracy"]),
        },
    )
    run.log_figure(fig, plots.COMPACT_CURVE)
    plots.close(fig)
    fig = plots.policy_bars(
        {"best": best.densities, "uniform": uniform_info["densities"]}, title=title
    )
    run.log_figure(fig, "plots/policy.png")
    plots.close(fig)
