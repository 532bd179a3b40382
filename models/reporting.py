"""PNG reports of model evaluations (matplotlib, Agg backend; not needed at serving time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
import numpy as np


def plot_roc(
    path: Path,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """ROC curves (label -> (fpr, tpr)) on linear and log-x axes side by side; returns `path`."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, log in zip(axes, (False, True), strict=True):
        for label, (fpr, tpr) in curves.items():
            ax.plot(fpr, tpr, label=label, linewidth=1.5)
        if not log:
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("false-positive rate" + (" (log)" if log else ""))
        ax.set_ylabel("true-positive rate")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    subtitle = ", ".join(f"{k}={v:.4f}" for k, v in (metrics or {}).items())
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_hit_rates(
    path: Path,
    ks: Sequence[int],
    hit_rates: Mapping[str, Sequence[float]],
    title: str,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Grouped bars of HR@k for each method (label -> one value per k); returns `path`."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(hit_rates))
    x = np.arange(len(ks))
    for i, (label, values) in enumerate(hit_rates.items()):
        bars = ax.bar(x + i * width, values, width, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x + width * (len(hit_rates) - 1) / 2, [f"HR@{k}" for k in ks])
    ax.set_ylabel("hit rate")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    subtitle = ", ".join(f"{k}={v:.4f}" for k, v in (metrics or {}).items())
    ax.set_title(f"{title}\n{subtitle}" if subtitle else title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
