"""Collects finished episodes, keeps the best feasible policy, and feeds logging sinks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class EpisodeSink(Protocol):
    """Receives one dict of scalar metrics per finished episode (e.g. MLflow)."""

    def write_episode(self, episode: int, metrics: dict[str, float]) -> None:
        """Record the metrics of episode number ``episode`` (0-based)."""


class EpisodeLog(Protocol):
    """Durable store of whole episode records (``tracking.EpisodeJournal``)."""

    def append(self, record: dict[str, Any]) -> None:
        """Make one episode record durable."""


class ReplayDiverged(ValueError):
    """A resumed search did not retrace the episodes it had recorded before: its journal
    holds a record that is not this search's. The run is left as it was (``search_run``
    ends it with the status it had before the resume)."""

    leaves_run_as_it_was = True


#: Fields of a journal record and the types they hold (``EpisodeRecord``, as JSON).
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "episode": (int,),
    "accuracy": (int, float),
    "reward": (int, float),
    "cost_ratio": (int, float),
    "density": (int, float),
    "budget": (int, float),
    "within_budget": (bool,),
    "densities": (dict,),
    "choice": (list,),
    "cost": (dict,),
}


def check_journal(records: Sequence[Any], where: str) -> None:
    """``ValueError`` unless ``records`` are whole episode records numbered 0, 1, 2...

    ``where`` names the journal (``"the journal of run 'abc' ('/path')"``). A record
    copied from another journal, or a line that is not a record, is named by its line.
    """
    for i, rec in enumerate(records):
        problem = None
        if not isinstance(rec, dict):
            problem = f"it is a {type(rec).__name__}, not an episode record"
        else:
            missing = [k for k in _RECORD_TYPES if k not in rec]
            wrong = [
                k
                for k, kinds in _RECORD_TYPES.items()
                if k in rec
                and (
                    not isinstance(rec[k], kinds)
                    or (isinstance(rec[k], bool) and bool not in kinds)
                )
            ]
            if missing:
                problem = f"it lacks {', '.join(missing)}"
            elif wrong:
                problem = (
                    f"its {', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} the wrong type"
                )
            elif rec["episode"] != i:
                problem = f"it is episode {rec['episode']}, where episode {i} belongs"
            elif not all(isinstance(c, int) and not isinstance(c, bool) for c in rec["choice"]):
                problem = "its choice is not a list of integers"
        if problem is not None:
            raise ValueError(
                f"{where} holds a record that is not this search's at line {i + 1} "
                f"({problem}); the run is left as it was: remove line {i + 1} and those after "
                "it to resume from there"
            )


@dataclass
class EpisodeRecord:
    """Figures of one finished episode."""

    episode: int
    accuracy: float
    reward: float
    cost_ratio: float
    density: float
    budget: float
    within_budget: bool
    densities: dict[str, float]
    choice: list[int]
    cost: dict[str, float]

    def scalars(self) -> dict[str, float]:
        """The metrics logged per episode."""
        return {
            "reward": self.reward,
            "accuracy": self.accuracy,
            "cost_ratio": self.cost_ratio,
            "density": self.density,
            "budget": self.budget,
        }


@dataclass
class EpisodeRecorder:
    """Template for what happens at the end of every episode, whatever the agent.

    SB3 agents reach it through ``agents.callbacks.RecorderCallback``; baselines call
    ``record`` directly. ``best`` is the feasible episode with the highest accuracy
    (lower cost ratio breaks ties); with several budgets, ``best_per_budget`` keeps one
    per budget value.

    Every record goes to the ``journal`` (durable at once) and then to the ``sinks``. A
    resumed search replays its past: ``replay`` holds the journal's earlier records,
    each replayed episode must retrace its own (else ``ReplayDiverged``) and is not
    journalled again, and the first ``logged`` episodes, which the sinks already hold,
    are not sent to them again.
    """

    sinks: Sequence[EpisodeSink] = ()
    history: list[EpisodeRecord] = field(default_factory=list)
    best: EpisodeRecord | None = None
    best_per_budget: dict[float, EpisodeRecord] = field(default_factory=dict)
    journal: EpisodeLog | None = None
    replay: Sequence[dict[str, Any]] = ()
    logged: int = 0
    log_budget: bool = True  # False when it never changes (a flat chart tells nothing)
    _sent: int = field(default=0, init=False, repr=False)  # episodes handed to the sinks

    @property
    def episodes(self) -> int:
        """Number of episodes recorded."""
        return len(self.history)

    def record(self, info: dict[str, Any]) -> EpisodeRecord:
        """Record a terminal ``info`` of ``LayerPruneEnv``; returns the record."""
        rec = EpisodeRecord(
            episode=len(self.history),
            accuracy=float(info["accuracy"]),
            reward=float(info["reward"]),
            cost_ratio=float(info["cost_ratio"]),
            density=float(info["density"]),
            budget=float(info["budget"]),
            within_budget=bool(info["within_budget"]),
            densities=dict(info["densities"]),
            choice=list(info["choice"]),
            cost=dict(info["cost"]),
        )
        if rec.episode < len(self.replay):
            past = self.replay[rec.episode]
            if list(past["choice"]) != rec.choice or float(past["budget"]) != rec.budget:
                raise ReplayDiverged(
                    f"resumed search diverged at episode {rec.episode}: the journal has "
                    f"choice {list(past['choice'])}, the replay chose {rec.choice}: the "
                    f"journal's record of episode {rec.episode} is not this search's; the run "
                    f"is left as it was (remove that record and those after it to resume "
                    "from there)"
                )
        elif self.journal is not None:
            self.journal.append(dataclasses.asdict(rec))
        self._keep(rec)
        self._send(rec)
        return rec

    def catch_up(self) -> None:
        """Finish the episode an interruption cut short: one the journal holds that was
        not kept yet, or one kept but not sent to the sinks (a signal lands between any two
        lines of :meth:`record`). Called when a search is interrupted, so that its run holds
        every episode its journal does."""
        records = getattr(self.journal, "records", None)  # EpisodeJournal's; fakes may lack it
        if records is not None and len(self.history) >= len(self.replay):
            for past in records()[len(self.history) :]:
                self._keep(EpisodeRecord(**past))
        for rec in self.history[max(self._sent, self.logged) :]:
            self._send(rec)

    def _keep(self, rec: EpisodeRecord) -> None:
        self.history.append(rec)
        if rec.within_budget:
            if _better(rec, self.best):
                self.best = rec
            key = round(rec.budget, 6)
            if _better(rec, self.best_per_budget.get(key)):
                self.best_per_budget[key] = rec

    def _send(self, rec: EpisodeRecord) -> None:
        metrics = rec.scalars()
        if not self.log_budget:
            del metrics["budget"]
        if self.best is not None:
            metrics["best_accuracy"] = self.best.accuracy
        if rec.episode >= self.logged:
            for sink in self.sinks:
                sink.write_episode(rec.episode, metrics)
        self._sent = rec.episode + 1

    @property
    def replaying(self) -> bool:
        """True while the episodes recorded are still the journal's past."""
        return len(self.history) < len(self.replay)


def _better(new: EpisodeRecord, old: EpisodeRecord | None) -> bool:
    if old is None:
        return True
    return (new.accuracy, -new.cost_ratio) > (old.accuracy, -old.cost_ratio)
