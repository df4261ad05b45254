"""Figures logged with every search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures only go to files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def search_curve(accuracy: Sequence[float], best: Sequence[float], title: str = "") -> Figure:
    """Per-episode proxy accuracy and the best feasible so far."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(accuracy, ".", ms=3, alpha=0.5, label="episode")
    ax.plot(best, "-", lw=1.5, label="best feasible")
    ax.set_xlabel("episode")
    ax.set_ylabel("holdout accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def policy_bars(policies: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """Per-layer densities of several policies (e.g. best vs uniform), side by side."""
    names = list(next(iter(policies.values())))
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 3.5))
    width = 0.8 / max(len(policies), 1)
    for i, (label, dens) in enumerate(policies.items()):
        xs = [k + i * width for k in range(len(names))]
        ax.bar(xs, [dens[n] for n in names], width=width, label=label)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))])
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("density kept")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def tradeoff(
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = ""
) -> Figure:
    """Accuracy versus cost ratio, one series per label."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, (cost, acc) in points.items():
        ax.plot(cost, acc, "o-", label=label)
    ax.set_xlabel("cost ratio (vs dense)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
