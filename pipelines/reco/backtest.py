"""The reco pipeline's backtest diff: overlap@k of the two item lists and the rate of changed top-1 items."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.backtest.report import DiffOutcome, IndexedResults, join, models_of, write_histogram


@dataclass
class RecoDiff:
    """Reco backtest diff: mean overlap@k of the item lists, changed top-1 rate, missing on either side."""

    compared: int
    k: int
    mean_overlap_at_k: float | None
    top1_changed: int
    top1_changed_rate: float | None
    missing_in_shadow: int
    missing_in_production: int
    duplicates_production: int
    duplicates_shadow: int
    production_models: dict[str, int]
    shadow_models: dict[str, int]
    overlaps: list[float] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The JSON-ready summary (without the per-event overlaps)."""
        summary = asdict(self)
        summary.pop("overlaps")
        return summary


def overlap_at_k(a: list[int], b: list[int], k: int) -> float:
    """|top-k of a ∩ top-k of b| / k."""
    return len(set(a[:k]) & set(b[:k])) / k


def diff_reco(production: IndexedResults, shadow: IndexedResults, window: set[str] | None,
              k: int = 10) -> RecoDiff:
    """Compare reco results event by event (see `join` for what `window` does)."""
    if k < 1:
        raise ValueError(f"overlap@k needs k >= 1, got {k}")
    joined = join(production.by_event, shadow.by_event, window)
    overlaps: list[float] = []
    top1_changed = 0
    for event_id in joined.both:
        before = list(production.by_event[event_id]["items"])
        after = list(shadow.by_event[event_id]["items"])
        overlaps.append(overlap_at_k(before, after, k))
        top1_changed += (before[:1] != after[:1])
    both = set(joined.both)
    return RecoDiff(
        compared=len(joined.both),
        k=k,
        mean_overlap_at_k=float(np.mean(overlaps)) if overlaps else None,
        top1_changed=top1_changed,
        top1_changed_rate=top1_changed / len(joined.both) if joined.both else None,
        missing_in_shadow=len(joined.missing_in_shadow),
        missing_in_production=len(joined.missing_in_production),
        duplicates_production=production.duplicates,
        duplicates_shadow=shadow.duplicates,
        production_models=models_of(r for e, r in production.by_event.items() if e in both),
        shadow_models=models_of(shadow.by_event.values()),
        overlaps=overlaps,
    )


def write_overlap_chart(path: Path, diff: RecoDiff, title: str) -> Path:
    """A histogram PNG of the per-event overlap@k of a reco diff."""
    return write_histogram(path, diff.overlaps, title, f"overlap@{diff.k} (production vs shadow items)",
                      bins=diff.k + 1, zero_line=False)


def format_reco(diff: RecoDiff) -> str:
    """A short human-readable summary of a reco diff."""
    overlap = "n/a" if diff.mean_overlap_at_k is None else f"{diff.mean_overlap_at_k:.3f}"
    rate = "n/a" if diff.top1_changed_rate is None else f"{diff.top1_changed_rate:.3f}"
    return (f"compared {diff.compared} events: overlap@{diff.k} {overlap}, top-1 changed {diff.top1_changed} "
            f"({rate})\nmissing in shadow: {diff.missing_in_shadow}; missing in production: "
            f"{diff.missing_in_production}")


def reco_backtest_diff(production: IndexedResults, shadow: IndexedResults, window: set[str] | None, *, k: int,
                       title: str, report_dir: Path) -> DiffOutcome:
    """`diff_reco` at `k`, summarised, with the overlaps' histogram (`overlap.png`)."""
    diff = diff_reco(production, shadow, window, k=k)
    png = write_overlap_chart(report_dir / "overlap.png", diff, title)
    return DiffOutcome(diff.as_json(), format_reco(diff), png)
