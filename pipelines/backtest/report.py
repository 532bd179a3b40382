"""The diff report of a backtest: production results vs shadow results of the same events, joined on event_id.

Pure Python (numpy for percentiles; matplotlib only to draw the histogram). Inputs are decoded result objects
(`dict`s as read from the topics); nothing here talks to Kafka or Flink.

Risk: a decision flip matrix (production decision -> shadow decision), unchanged count, events missing on either
side, and statistics of `delta = shadow score - production score`. Reco: overlap@k of the two item lists and the
rate of changed top-1 items.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DECISIONS = ("approve", "review", "block")
Result = Mapping[str, Any]


@dataclass(frozen=True)
class IndexedResults:
    """Results of one side keyed by event_id (the first one kept) and how many extra copies were dropped."""

    by_event: dict[str, Result]
    duplicates: int


def index_results(results: Iterable[Result]) -> IndexedResults:
    """Key results by `event_id`; a repeated event_id (an at-least-once re-delivery) keeps its first result."""
    by_event: dict[str, Result] = {}
    duplicates = 0
    for result in results:
        event_id = str(result["event_id"])
        if event_id in by_event:
            duplicates += 1
        else:
            by_event[event_id] = result
    return IndexedResults(by_event, duplicates)


@dataclass(frozen=True)
class Join:
    """The event ids compared, and those present on one side only (sorted, for stable reports)."""

    both: list[str]
    missing_in_shadow: list[str]
    missing_in_production: list[str]


def join(production: Mapping[str, Result], shadow: Mapping[str, Result], window: set[str] | None) -> Join:
    """Join on event_id. `window` (the backtest's valid input events) limits the production side: production
    results of events outside the backtest's input range are not expected in the shadow topic. With no window
    (a start from a checkpoint, whose input offsets are unknown) only the shadow's events are compared."""
    expected = set(production) & window if window is not None else set(production) & set(shadow)
    return Join(
        both=sorted(expected & set(shadow)),
        missing_in_shadow=sorted(expected - set(shadow)),
        missing_in_production=sorted(set(shadow) - set(production)),
    )


@dataclass(frozen=True)
class DeltaStats:
    """Statistics of `shadow score - production score` over the compared events (None when there are none)."""

    count: int
    mean: float | None
    mean_abs: float | None
    p50_abs: float | None
    p95_abs: float | None
    max_abs: float | None
    changed: int


def delta_stats(deltas: list[float]) -> DeltaStats:
    """Signed mean, and mean / median / 95th percentile / max of the absolute deltas; `changed` counts non-zero."""
    if not deltas:
        return DeltaStats(0, None, None, None, None, None, 0)
    values = np.asarray(deltas, dtype=np.float64)
    absolute = np.abs(values)
    return DeltaStats(
        count=len(deltas),
        mean=float(values.mean()),
        mean_abs=float(absolute.mean()),
        p50_abs=float(np.percentile(absolute, 50)),
        p95_abs=float(np.percentile(absolute, 95)),
        max_abs=float(absolute.max()),
        changed=int(np.count_nonzero(values)),
    )


@dataclass
class RiskDiff:
    """Risk backtest diff: decision matrix and flips, unchanged, missing on either side, score deltas."""

    compared: int
    unchanged: int
    flips: dict[str, int]
    matrix: dict[str, dict[str, int]]
    missing_in_shadow: int
    missing_in_production: int
    duplicates_production: int
    duplicates_shadow: int
    score_delta: DeltaStats
    production_models: dict[str, int]
    shadow_models: dict[str, int]
    examples_missing_in_shadow: list[str] = field(default_factory=list)
    examples_missing_in_production: list[str] = field(default_factory=list)
    deltas: list[float] = field(default_factory=list, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The JSON-ready summary (without the per-event deltas)."""
        summary = asdict(self)
        summary.pop("deltas")
        return summary


def flip_key(before: str, after: str) -> str:
    """The name of a decision flip, e.g. `approve->review`."""
    return f"{before}->{after}"


def diff_risk(production: IndexedResults, shadow: IndexedResults, window: set[str] | None) -> RiskDiff:
    """Compare risk results event by event (see `join` for what `window` does)."""
    joined = join(production.by_event, shadow.by_event, window)
    labels = sorted({*DECISIONS, *(str(r["decision"]) for r in (*production.by_event.values(),
                                                                   *shadow.by_event.values()))},
                    key=lambda d: (DECISIONS.index(d) if d in DECISIONS else len(DECISIONS), d))
    matrix = {before: dict.fromkeys(labels, 0) for before in labels}
    deltas: list[float] = []
    for event_id in joined.both:
        before, after = production.by_event[event_id], shadow.by_event[event_id]
        matrix[str(before["decision"])][str(after["decision"])] += 1
        deltas.append(float(after["score"]) - float(before["score"]))
    flips = {flip_key(b, a): n for b, row in matrix.items() for a, n in row.items() if a != b}
    compared = set(joined.both)
    return RiskDiff(
        compared=len(joined.both),
        unchanged=sum(matrix[d][d] for d in labels),
        flips=flips,
        matrix=matrix,
        missing_in_shadow=len(joined.missing_in_shadow),
        missing_in_production=len(joined.missing_in_production),
        duplicates_production=production.duplicates,
        duplicates_shadow=shadow.duplicates,
        score_delta=delta_stats(deltas),
        production_models=_models(r for e, r in production.by_event.items() if e in compared),
        shadow_models=_models(shadow.by_event.values()),
        examples_missing_in_shadow=joined.missing_in_shadow[:10],
        examples_missing_in_production=joined.missing_in_production[:10],
        deltas=deltas,
    )


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


def diff_reco(production: IndexedResults, shadow: IndexedResults, window: set[str] | None, k: int = 10) -> RecoDiff:
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
        production_models=_models(r for e, r in production.by_event.items() if e in both),
        shadow_models=_models(shadow.by_event.values()),
        overlaps=overlaps,
    )


def _models(results: Iterable[Result]) -> dict[str, int]:
    """Results per model and where it ran: `risk@3` in-process, `risk-large@1 on server` on a model server,
    `risk-large@1 fallback` in-process after its server failed (the results' `model`, `backend`, `fallback`)."""
    return dict(sorted(Counter(_scored_by(r) for r in results).items()))


def _scored_by(result: Result) -> str:
    model = str(result.get("model"))
    if result.get("backend"):
        return f"{model} on {result['backend']}"
    return f"{model} fallback" if result.get("fallback") else model


def write_json(path: Path, summary: Mapping[str, Any]) -> Path:
    """Write the JSON summary (indented, keys in insertion order); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def write_delta_histogram(path: Path, deltas: list[float], title: str) -> Path:
    """A histogram PNG of the score deltas (log-scaled counts; an empty plot says there was nothing to compare)."""
    return _histogram(path, deltas, title, "shadow score - production score", bins=60, zero_line=True)


def write_overlap_chart(path: Path, diff: RecoDiff, title: str) -> Path:
    """A histogram PNG of the per-event overlap@k of a reco diff."""
    return _histogram(path, diff.overlaps, title, f"overlap@{diff.k} (production vs shadow items)",
                      bins=diff.k + 1, zero_line=False)


def _histogram(path: Path, values: list[float], title: str, xlabel: str, *, bins: int, zero_line: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    if values:
        ax.hist(values, bins=bins, color="#4a7ab7", log=True)
        if zero_line:
            ax.axvline(0.0, color="#444", linewidth=0.8)
    else:
        ax.text(0.5, 0.5, "no events on both sides", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("events (log)")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_risk(diff: RiskDiff) -> str:
    """A short human-readable summary of a risk diff."""
    stats = diff.score_delta
    lines = [f"compared {diff.compared} events: {diff.unchanged} decisions unchanged, "
             f"{sum(diff.flips.values())} flipped"]
    lines += [f"  {name:<18} {count}" for name, count in diff.flips.items() if count]
    lines.append(f"missing in shadow: {diff.missing_in_shadow}; missing in production: {diff.missing_in_production}")
    if stats.count:
        lines.append(f"score delta (shadow - production): mean {stats.mean:+.5f}, |delta| p50 {stats.p50_abs:.5f}, "
                     f"p95 {stats.p95_abs:.5f}, max {stats.max_abs:.5f}; {stats.changed} scores changed")
    return "\n".join(lines)


def format_reco(diff: RecoDiff) -> str:
    """A short human-readable summary of a reco diff."""
    overlap = "n/a" if diff.mean_overlap_at_k is None else f"{diff.mean_overlap_at_k:.3f}"
    rate = "n/a" if diff.top1_changed_rate is None else f"{diff.top1_changed_rate:.3f}"
    return (f"compared {diff.compared} events: overlap@{diff.k} {overlap}, top-1 changed {diff.top1_changed} "
            f"({rate})\nmissing in shadow: {diff.missing_in_shadow}; missing in production: "
            f"{diff.missing_in_production}")
