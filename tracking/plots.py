"""Figures logged with every search."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures only go to files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Where a search logs ``compact_curve`` (its description shows it by this path).
COMPACT_CURVE = "plots/search_curve_small.png"


def search_curve(
    accuracy: Sequence[float],
    best: Sequence[float],
    title: str = "",
    *,
    references: Mapping[str, float] | None = None,
    refine_from: int | None = None,
) -> Figure:
    """Per-episode proxy accuracy, the best feasible so far, and reference lines.

    ``references``: label -> holdout accuracy drawn as a dashed line (dense, uniform);
    ``refine_from``: first episode of the refinement phase, shaded. The y-range follows
    the best curve and the references, so early outliers do not squash it.
    """
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    ax.plot(accuracy, ".", ms=4, alpha=0.45, color="tab:blue", label="episode (holdout)")
    ax.plot(best, "-", lw=2, color="tab:orange", label="best feasible so far")
    styles = iter(("tab:green", "tab:red", "tab:purple", "tab:gray"))
    for label, value in (references or {}).items():
        ax.axhline(value, ls="--", lw=1.2, color=next(styles), label=f"{label} ({value:.3f})")
    if refine_from is not None and refine_from < len(accuracy):
        ax.axvspan(refine_from - 0.5, len(accuracy) - 0.5, color="0.9", zorder=0)
        ax.text(refine_from, 0.02, " refinement", transform=ax.get_xaxis_transform(), fontsize=9)
    _follow_best(ax, accuracy, best, references, min_pad=0.01)
    ax.set_xlabel("episode")
    ax.set_ylabel("holdout accuracy (search proxy)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _follow_best(
    ax: plt.Axes,
    accuracy: Sequence[float],
    best: Sequence[float],
    references: Mapping[str, float] | None,
    *,
    min_pad: float,
) -> None:
    """A y-range that follows the best curve and the references (and the episodes' upper
    three quarters), so early outliers do not squash it."""
    shown = [v for v in best if v == v] + list((references or {}).values())
    if not shown:
        return
    low = min(min(shown), sorted(accuracy)[len(accuracy) // 4] if accuracy else 1.0)
    high = max(max(shown), max(accuracy, default=0.0))
    pad = max(min_pad, 0.08 * (high - low))
    ax.set_ylim(low - pad, min(1.0, high + pad) + pad / 4)


def compact_curve(
    accuracy: Sequence[float],
    best: Sequence[float],
    *,
    references: Mapping[str, float] | None = None,
) -> Figure:
    """The search curve at 512 x 60 pixels, for the run's description: the MLflow UI
    shows a description's first 100 pixels before "Show more", so the headline and this
    strip are what a person sees on opening the run."""
    fig, ax = plt.subplots(figsize=(6.4, 0.75), dpi=80)
    ax.plot(accuracy, ".", ms=2, alpha=0.4, color="tab:blue", label="episode")
    ax.plot(best, "-", lw=1.8, color="tab:orange", label="best feasible")
    styles = iter(("tab:green", "tab:red", "tab:purple", "tab:gray"))
    for label, value in (references or {}).items():
        ax.axhline(value, ls="--", lw=1, color=next(styles), label=f"{label} {value:.3f}")
    _follow_best(ax, accuracy, best, references, min_pad=0.005)
    ax.tick_params(labelsize=7)
    ax.set_ylabel("holdout", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right", ncol=4, frameon=False)
    fig.tight_layout(pad=0.3)
    return fig


def policy_bars(policies: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """Per-layer densities of several policies (e.g. best vs uniform), side by side."""
    names = list(next(iter(policies.values())))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names) + 3), 5), dpi=110)
    width = 0.8 / max(len(policies), 1)
    for i, (label, dens) in enumerate(policies.items()):
        xs = [k + i * width for k in range(len(names))]
        ax.bar(xs, [dens[n] for n in names], width=width, label=label)
    ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("density kept")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def tradeoff(
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = "",
    *,
    ylabel: str = "accuracy",
    references: Mapping[str, float] | None = None,
) -> Figure:
    """Accuracy versus cost ratio, one series per label, with dashed reference lines."""
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    for label, (cost, acc) in points.items():
        ax.plot(cost, acc, "o-", label=label)
    styles = iter(("tab:green", "tab:gray", "tab:purple"))
    for label, value in (references or {}).items():
        ax.axhline(value, ls="--", lw=1.2, color=next(styles), label=f"{label} ({value:.3f})")
    ax.set_xlabel("cost ratio (vs dense)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
