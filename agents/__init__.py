"""Agents (SB3 learners and baselines), the search loop and the CLI.

``run_search(SearchConfig(...))`` runs one tracked search; ``get_agent(name)`` builds an
agent with its YAML hyperparameters.
"""

from agents import baselines as _baselines  # noqa: F401  registers baselines
from agents import learners as _learners  # noqa: F401  registers learners
from agents import optuna_search as _optuna_search  # noqa: F401  registers tpe, cmaes
from agents.base import AGENTS, SearchAgent, get_agent, list_agents, load_hyperparams
from agents.recorder import EpisodeRecord, EpisodeRecorder
from agents.search import SearchConfig, SearchResult, run_search

__all__ = [
    "AGENTS",
    "EpisodeRecord",
    "EpisodeRecorder",
    "SearchAgent",
    "SearchConfig",
    "SearchResult",
    "get_agent",
    "list_agents",
    "load_hyperparams",
    "run_search",
]
