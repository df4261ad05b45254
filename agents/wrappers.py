"""Environment wrappers used by the learning agents."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class MovingAverageBaseline(gym.Wrapper):
    """Subtracts an exponential moving average of episode rewards (AMC).

    Rewards arrive only at the end of an episode; the agent sees ``reward - baseline``,
    the baseline then moves toward the raw reward. ``info["reward"]`` keeps the raw value.
    """

    def __init__(self, env: gym.Env, decay: float = 0.95) -> None:
        super().__init__(env)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.baseline: float | None = None

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the wrapped env; shift the terminal reward by the running baseline."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            raw = float(reward)
            if self.baseline is None:
                self.baseline = raw
            reward = raw - self.baseline
            self.baseline = self.decay * self.baseline + (1.0 - self.decay) * raw
        return obs, float(reward), terminated, truncated, info
