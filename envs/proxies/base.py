"""The accuracy-proxy protocol and its registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from core import Registry
from envs.workloads.base import Workload


class AccuracyProxy(ABC):
    """Scores a set of keep-masks on a workload: higher is better, in [0, 1].

    A proxy is bound to one workload at construction and may cache anything that does
    not depend on the masks (data tensors, a working copy of the model).
    """

    name: ClassVar[str] = "abstract"

    def __init__(self, workload: Workload) -> None:
        self.workload = workload

    @abstractmethod
    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        """Score of the network with ``masks`` (parameter name -> bool keep-mask)."""


PROXIES: Registry[AccuracyProxy] = Registry("accuracy proxy")
