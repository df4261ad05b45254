"""The scalar settings of a search, each stated once: type, default, range and help.

``SearchConfig`` takes its field defaults from ``SEARCH_PARAMS`` and checks its values
with it; the ``search`` command takes its options' defaults and help from it. Light (no
torch, no envs): the CLI reads it to build ``hwprune search --help``.
"""

from __future__ import annotations

from agents import checks
from agents.checks import (
    MAX_ENVS_PER_CPU,
    MAX_EPISODES,
    MAX_FINETUNE_EPOCHS,
    MAX_FINETUNE_STEPS,
    MAX_FRONT_POINTS,
)
from core import defaults
from core.params import Param, Schema

#: numpy's seed range.
MAX_SEED = 2**32 - 1


def _most_threads() -> int:
    # Looked up at check time (and through the module, so that tests can narrow it).
    return checks.usable_cpus()


def _most_envs() -> int:
    return MAX_ENVS_PER_CPU * checks.usable_cpus()


#: ``SearchConfig``'s scalar fields (the nested task, the parameter mappings and the
#: ``budgets`` range are checked by ``SearchConfig.validate`` itself). Names and values
#: the registries know (agent, proxies, reward, device) are strings here; their choices
#: are checked against the registries.
SEARCH_PARAMS = Schema(
    (
        Param(
            "budget",
            "float",
            defaults.BUDGET,
            low=0.0,
            high=1.0,
            low_open=True,
            out_of_range="{label} {value} is outside {interval}",
            help="Target cost ratio vs the dense network, in (0, 1].",
        ),
        Param(
            "points",
            "int",
            6,
            low=2,
            high=MAX_FRONT_POINTS,
            ceiling=True,
            help="Budgets evaluated on the front (with --budgets).",
        ),
        Param("agent", "str", defaults.AGENT, help="Agent or baseline."),
        Param(
            "episodes",
            "int",
            defaults.EPISODES,
            low=1,
            high=MAX_EPISODES,
            ceiling=True,
            help="Evaluated episodes.",
        ),
        Param(
            "seed",
            "int",
            0,
            low=0,
            high=MAX_SEED,
            help="Random seed of the search (same seed, same search); every seed prunes "
            "the same trained workload.",
        ),
        Param(
            "proxy",
            "str",
            None,
            nullable=True,
            help="Accuracy proxy of the reward (default: a 50-step finetune when the search "
            "recovers a network of >= 1M parameters, else the scheme's: a 5-step finetune "
            "for channel, holdout otherwise).",
        ),
        Param(
            "shortlist",
            "int",
            0,
            low=0,
            help="Re-score the search's N best policies with --shortlist-proxy and keep the "
            "best by it (0: keep the search proxy's best).",
        ),
        Param(
            "shortlist_proxy",
            "str",
            "finetune",
            help="Proxy that re-scores the shortlist (parameters: config file).",
        ),
        Param("reward", "str", "accuracy", help="Reward form."),
        Param("experiment", "str", "hwprune", help="MLflow experiment."),
        Param(
            "n_envs",
            "int",
            1,
            low=1,
            high=_most_envs,
            ceiling=True,
            why=f"{MAX_ENVS_PER_CPU} per CPU this process may use",
            help="Parallel environments (subprocesses).",
        ),
        Param(
            "finetune_steps",
            "int",
            0,
            low=0,
            high=MAX_FINETUNE_STEPS,
            ceiling=True,
            help="Fine-tune steps before export (0: none).",
        ),
        Param(
            "finetune_epochs",
            "int",
            0,
            low=0,
            high=MAX_FINETUNE_EPOCHS,
            help="Recover the best (and the uniform) policy by N epochs of masked training "
            "before test, export and registry (0: none).",
        ),
        Param(
            "distill",
            "bool",
            False,
            help="Distil the recovery from the dense model (with --finetune-epochs).",
        ),
        Param(
            "gradual",
            "float",
            0.0,
            low=0.0,
            high=1.0,
            high_open=True,
            help="Reach the policy's masks from dense over this share of the recovery, "
            "through the scheme's levels (cubic schedule; with --finetune-epochs; 0: at once).",
        ),
        Param(
            "threads",
            "int",
            1,
            low=1,
            high=_most_threads,
            ceiling=True,
            why="the CPUs this process may use",
            help="Torch threads per process.",
        ),
        Param("device", "str", "cpu", help="Where accuracy is evaluated: cpu|cuda|auto."),
    )
)
