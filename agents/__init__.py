"""The search methods (SB3 learners, baselines, Optuna samplers) and, in ``agents.app``,
the application on top of them: the tracked search loop, sweeps and the CLI.

``run_search(SearchConfig(...))`` runs one tracked search; ``search_policy(task, ...)``
runs the same search untracked and returns its best policy; ``get_agent(name)`` builds an
agent with its YAML hyperparameters. Names are imported on first use, so that the CLI
starts without loading torch, Stable-Baselines3 and MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AGENTS": "agents.base",
    "SearchAgent": "agents.base",
    "get_agent": "agents.base",
    "list_agents": "agents.base",
    "load_hyperparams": "agents.base",
    "EpisodeRecord": "agents.recorder",
    "EpisodeRecorder": "agents.recorder",
    "FoundPolicy": "agents.policy_search",
    "search_policy": "agents.policy_search",
    "SearchConfig": "agents.app.search",
    "SearchResult": "agents.app.search",
    "run_search": "agents.app.search",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
