"""SB3 callbacks that connect a learning agent to the episode recorder."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from agents.recorder import EpisodeRecorder


class RecorderCallback(BaseCallback):
    """Records every finished episode and stops learning after ``max_episodes``.

    Args:
        recorder: receives each terminal ``info``.
        max_episodes: stop once this many episodes are recorded (all envs together).
        progress: optional callable ``progress(n_done)`` (e.g. a progress bar update).
    """

    def __init__(
        self,
        recorder: EpisodeRecorder,
        max_episodes: int,
        progress: object | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.recorder = recorder
        self.max_episodes = int(max_episodes)
        self.progress = progress

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if done and self.recorder.episodes < self.max_episodes and "accuracy" in info:
                self.recorder.record(info)
                if self.progress is not None:
                    self.progress(1)
        return self.recorder.episodes < self.max_episodes
