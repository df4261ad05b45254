"""The names the CLI accepts, importable without torch, Stable-Baselines3 or MLflow.

The registries (``envs.WORKLOADS``, ``pruning.SCHEMES``, ``hwmodels.HARDWARE``,
``envs.PROXIES``, ``agents.AGENTS``) are the truth: they build things. Loading them
imports torch, torchvision and SB3 (10-20 s on a busy machine), too slow for
``hwprune list`` or for refusing a misspelt flag. This table mirrors their names, with
a one-line summary each for ``hwprune list``, so that the CLI checks names and lists them
before any heavy import. ``tests/test_catalog.py`` checks that it names exactly what the
registries hold (in their order), so that the two cannot drift: a new scheme, workload,
hardware preset, proxy or agent needs its line here too.

Workloads built from torchvision are a family, not listed here: their names are
torchvision's own (``envs.models.torchvision_models()``), known only by importing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Workloads other than torchvision's, in registration order: name -> summary.
WORKLOADS: Mapping[str, str] = {
    "digits-cnn": "six-conv VGG-style CNN, bundled 8x8 digits at 16x16 (default)",
    "fashion-cnn": "digits-cnn at twice the width, on Fashion-MNIST (28x28)",
    "resnet20": "CIFAR ResNet-20; trained on digits at 32x32 by default",
    "resnet56": "CIFAR ResNet-56 (AMC's CIFAR-10 benchmark); needs a checkpoint",
    "vgg11-cifar": "VGG-11 with BatchNorm for 32x32 inputs; needs a checkpoint",
}
#: The summary line of the torchvision family.
TORCHVISION = "every torchvision classifier (resnet18...): hwprune list models"

SCHEMES: Mapping[str, str] = {
    "balanced": "every group of group_size weights keeps the same n",
    "channel": "whole output channels, a multiple of round_to kept",
    "crossbar": "whole crossbars, or columns within a crossbar row-block",
    "ikr": "every kernel keeps n weights, in one of a few regular shapes",
    "pattern": "every kernel keeps n weights, in one of P layer patterns",
    "unstructured": "the largest-magnitude weights of a layer, anywhere",
}

HARDWARE: Mapping[str, str] = {
    "cpu": "this machine's CPU: latencies measured by profile-cpu",
    "flops": "naive reference: kept MACs as cycles, parameters as resources",
    "gpu-jetson-tx2": "embedded GPU (Jetson TX2-like): implicit GEMM, tiles, waves",
    "gpu-h100": "datacenter GPU (H100-like): tensor cores, tiles, roofline",
    "accel-kang-8": "Kang sparse PE array: 32 PEs, block g=8, 2 multipliers/PE",
    "accel-kang-16": "Kang sparse PE array: 32 PEs, block g=16, 4 multipliers/PE",
    "reram-128": "ReRAM crossbars 128x128 (MNSIM mapping), column pruning",
    "reram-256": "ReRAM crossbars 256x256 (MNSIM mapping), column pruning",
    "systolic-32": "32x32 weight-stationary systolic array, int8",
    "systolic-128": "128x128 weight-stationary systolic array (TPU-like), int8",
}

PROXIES: Mapping[str, str] = {
    "holdout": "holdout accuracy after BatchNorm re-estimation, head re-fit",
    "finetune": "holdout accuracy after a short fine-tune, masks fixed",
    "weight-energy": "data-free: the share of weight energy kept per layer",
    "holdout-energy": "holdout blended with weight-energy",
}

AGENTS: Mapping[str, str] = {
    "uniform": "densest uniform density within budget (one evaluation)",
    "random": "random feasible policies, best kept",
    "greedy": "start dense, prune the cheapest-accuracy layer step by step",
    "ddpg": "DDPG with AMC's recipe (warm-up, decaying noise, gamma 1)",
    "td3": "TD3: twin critics, delayed actor, AMC-style warm-up and noise",
    "sac": "SAC: entropy-regularised stochastic policy, n-step returns",
    "ppo": "PPO: on-policy, whole-episode rollouts, Monte-Carlo returns",
    "tpe": "Optuna's TPE sampler, one trial per episode",
    "cmaes": "Optuna's CMA-ES sampler, one trial per episode",
}

#: Agents that need an extra (``agents.extras``): their constructors check it too.
AGENT_EXTRAS: Mapping[str, str] = {"tpe": "baselines", "cmaes": "baselines"}

#: ``envs.REWARD_FORMS`` and ``envs.evaluation.DEVICES``.
REWARD_FORMS: tuple[str, ...] = ("accuracy", "accuracy-log-cost", "lagrangian")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

#: ``hwprune list`` sections: title -> (registry kind, as errors name it; summaries).
SECTIONS: Mapping[str, tuple[str, Mapping[str, str]]] = {
    "models": ("model", WORKLOADS),
    "schemes": ("scheme", SCHEMES),
    "hardware": ("hardware preset", HARDWARE),
    "proxies": ("accuracy proxy", PROXIES),
    "agents": ("agent", AGENTS),
}


def _unknown(kind: str, name: str, choices: Iterable[str]) -> KeyError:
    """The registries' own message (imported only on this error path: ``hwmodels``
    loads numpy, which ``hwprune list`` does without)."""
    from hwmodels.registry import unknown_name

    return unknown_name(kind, name, choices)


def check_name(section: str, name: str) -> str:
    """``name`` if ``section`` (a key of ``SECTIONS``) has it, else the registry's own
    ``KeyError`` (did you mean, valid choices). A model that is not one of ``WORKLOADS``
    may be torchvision's: that is checked against the full registry (importing torch)."""
    kind, names = SECTIONS[section]
    if name in names:
        return name
    if section == "models":
        from envs import list_workloads

        if name in list_workloads():
            return name
        raise _unknown(kind, name, list_workloads())
    raise _unknown(kind, name, names)


def check_choice(setting: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if among ``choices``, else ``ValueError`` naming them (as ``SearchConfig``
    words it)."""
    if value not in choices:
        raise ValueError(f"unknown {setting} {value!r}; valid choices: {', '.join(choices)}")
    return value


def check_names(
    *,
    model: str | None = None,
    scheme: str | None = None,
    hardware: str | None = None,
    metric: str | None = None,
    agent: str | None = None,
    proxy: str | None = None,
    shortlist_proxy: str | None = None,
    reward: str | None = None,
    device: str | None = None,
) -> None:
    """The names of a search's settings (None: not given), checked without loading a
    registry: ``KeyError``/``ValueError`` with the messages the full checks give."""
    from hwmodels.cost import resolve_metric

    for section, value in (
        ("schemes", scheme),
        ("hardware", hardware),
        ("agents", agent),
        ("proxies", proxy),
    ):
        if value is not None:
            check_name(section, value)
    if agent in AGENT_EXTRAS:
        from agents.extras import require_extra

        require_extra(AGENT_EXTRAS[agent], f"agent {agent!r}")
    if metric is not None:
        resolve_metric(metric)
    if shortlist_proxy is not None:
        try:
            check_name("proxies", shortlist_proxy)
        except KeyError as exc:
            raise KeyError(f"shortlist_proxy {shortlist_proxy!r}: {exc.args[0]}") from None
    if reward is not None:
        check_choice("reward", reward, REWARD_FORMS)
    if device is not None:
        check_choice("device", device, DEVICES)
    if model is not None:  # last: a torchvision name costs the import of torchvision
        check_name("models", model)
