"""Shared fixtures and helpers: an isolated MLflow store, tiny generated workloads and
tasks, cheap deterministic proxies, agents with shortened warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from agents.base import get_agent, load_hyperparams
from envs import PruningTask, build_task
from envs.proxies.base import AccuracyProxy
from envs.workloads.base import Workload
from envs.workloads.builtin import get_workload
from hwmodels import get_hardware
from pruning import get_scheme


@pytest.fixture(autouse=True, scope="session")
def _isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session logs to its own temporary MLflow store."""
    import os

    # Tests run two processes on two cores: one torch thread each avoids oversubscription.
    torch.set_num_threads(1)
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ["HWPRUNE_STATE_DIR"] = str(store / "state")  # episode journals
    # A SQLite store keeps artifacts in ./mlruns: run from the temp dir so that nothing
    # lands in the checkout.
    os.chdir(store)


def write_idx(path, array, *, magic: bytes | None = None, cut: int = 0) -> None:
    """``array`` (uint8) as an idx file at ``path`` (gzipped if it ends in .gz)."""
    import gzip

    import numpy as np

    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    blob = header + np.asarray(array.shape, dtype=">i4").tobytes() + array.tobytes()
    blob = blob[: len(blob) - cut]
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(blob)


def write_idx_dir(root, *, gz: bool, n_train: int = 60, n_test: int = 20) -> None:
    """The four (Fashion-)MNIST idx files of random 28x28 images, labels cycling 0-9."""
    import numpy as np

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            root / f"{split}-images-idx3-ubyte{suffix}",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))


class KeptMagnitudeProxy(AccuracyProxy):
    """Test double: the share of total |weight| the masks keep (cheap, deterministic)."""

    name = "kept-magnitude"

    def __init__(self, workload: Workload) -> None:
        super().__init__(workload)
        self._params = dict(workload.model.named_parameters())
        self._total = sum(float(p.detach().abs().sum()) for p in self._params.values())

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        lost = sum(float((self._params[k].detach().abs() * ~m).sum()) for k, m in masks.items())
        return 1.0 - lost / self._total


def tiny_cnn() -> nn.Module:
    """Three convs (one with BN) and a linear layer on 1x8x8 inputs."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


class TinyResidual(nn.Module):
    """A residual block with a depthwise conv: the couplings channel pruning must respect."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.head = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn1(self.dw(x)))
        x = torch.relu(x + self.bn2(self.pw(y)))
        x = torch.relu(self.head(x))
        return self.fc(x.mean(dim=(2, 3)))


def make_workload(model: nn.Module, name: str) -> Workload:
    """A workload around ``model`` with generated 1x8x8 data."""
    gen = np.random.default_rng(0)
    x = torch.as_tensor(gen.normal(size=(64, 1, 8, 8)), dtype=torch.float32)
    y = torch.as_tensor(gen.integers(0, 10, size=64))
    return Workload(name, model.eval(), x[:1], (x, y), (x, y), (x, y), 10)


@pytest.fixture(scope="session")
def digits() -> Workload:
    """The embedded default workload: digits-cnn, trained once and cached on disk."""
    return get_workload("digits-cnn")


@pytest.fixture(scope="session")
def tiny_workload() -> Workload:
    """A randomly initialised tiny CNN with generated data (no training, no files)."""
    torch.manual_seed(0)
    return make_workload(tiny_cnn(), "tiny")


@pytest.fixture(scope="session")
def residual_workload() -> Workload:
    """A randomly initialised residual/depthwise net with generated data."""
    torch.manual_seed(1)
    return make_workload(TinyResidual(), "tiny-residual")


@pytest.fixture
def kept_magnitude_proxy(tiny_workload: Workload) -> KeptMagnitudeProxy:
    """The cheap test proxy bound to the tiny workload."""
    return KeptMagnitudeProxy(tiny_workload)


@pytest.fixture
def stub_cost_workload(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``envs.get_workload`` returns a small untrained CNN (no training, no data): for
    commands that only cost a model. Returns its prunable layer names."""
    from types import SimpleNamespace

    import envs

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    ).eval()
    workload = SimpleNamespace(model=model, example_input=torch.randn(1, 3, 8, 8))
    monkeypatch.setattr(envs, "get_workload", lambda name, **kw: workload)
    return ["0", "2", "4"]


class MagnitudeProxy(AccuracyProxy):
    """Cheap deterministic score: the share of absolute weight each layer keeps, averaged
    with a convex penalty so that pruning one layer hard is worse than spreading it."""

    name = "magnitude-test"

    def evaluate(self, masks: dict[str, torch.Tensor]) -> float:
        scores = []
        for name, param in self.workload.model.named_parameters():
            if not name.endswith("weight") or param.dim() < 2:
                continue
            w = param.detach().abs()
            kept = w[masks[name]].sum() / w.sum() if name in masks else torch.tensor(1.0)
            scores.append(float(kept) ** 2)
        return sum(scores) / len(scores)


def tiny_task() -> PruningTask:
    """Four prunable layers, balanced pruning on the Kang accelerator."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()
    x = torch.randn(32, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (32,), generator=gen)
    workload = Workload(
        "tiny", model, x[:1], train=(x, y), holdout=(x, y), test=(x, y), num_classes=10
    )
    hw = get_hardware("accel-kang-16")
    return build_task(workload, get_scheme("balanced", hardware=hw), hw)


def fast_agent(name: str):
    """The agent with its YAML defaults, warm-up shortened to fit the tiny runs."""
    hp = load_hyperparams(name)
    overrides = {"warmup_episodes": 5} if "warmup_episodes" in hp else {}
    if "rollout_episodes" in hp:
        overrides["rollout_episodes"] = 4
    return get_agent(name, overrides)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: small networks train several times faster so on a
    shared 2-core machine (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
