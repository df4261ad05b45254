"""AMC's exploration noise: Gaussian with a scale that decays once per episode."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.noise import ActionNoise


class DecayingNormalNoise(ActionNoise):
    """Normal noise ``N(0, sigma)``; ``sigma`` is multiplied by ``decay`` at each episode end.

    SB3 calls ``reset()`` when an episode ends, which is where the decay happens; the
    algorithm clips noisy actions to the action bounds (AMC truncates the normal there).
    """

    def __init__(
        self,
        size: int = 1,
        sigma: float = 0.5,
        decay: float = 0.95,
        min_sigma: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if sigma < 0 or not 0 < decay <= 1:
            raise ValueError(
                f"need sigma >= 0 and decay in (0, 1]; got sigma={sigma}, decay={decay}"
            )
        self.size = size
        self.sigma = float(sigma)
        self.decay = float(decay)
        self.min_sigma = float(min_sigma)
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        return self._rng.normal(0.0, self.sigma, self.size).astype(np.float32)

    def reset(self) -> None:
        """Called by SB3 at the end of each episode: decay the scale."""
        self.sigma = max(self.min_sigma, self.sigma * self.decay)
