"""The risk pipeline's backtest diff: a decision flip matrix (production decision -> shadow decision), unchanged
count, events missing on either side, and statistics of `delta = shadow score - production score`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.backtest.report import (
    DeltaStats,
    DiffOutcome,
    IndexedResults,
    delta_stats,
    join,
    models_of,
    write_histogram,
)

DECISIONS = ("approve", "review", "block")


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
        production_models=models_of(r for e, r in production.by_event.items() if e in compared),
        shadow_models=models_of(shadow.by_event.values()),
        examples_missing_in_shadow=joined.missing_in_shadow[:10],
        examples_missing_in_production=joined.missing_in_production[:10],
        deltas=deltas,
    )


def write_delta_histogram(path: Path, deltas: list[float], title: str) -> Path:
    """A histogram PNG of the score deltas (log-scaled counts; an empty plot says there was nothing to compare)."""
    return write_histogram(path, deltas, title, "shadow score - production score", bins=60, zero_line=True)


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


def risk_backtest_diff(production: IndexedResults, shadow: IndexedResults, window: set[str] | None, *, k: int,
                       title: str, report_dir: Path) -> DiffOutcome:
    """`diff_risk`, summarised, with the score deltas' histogram (`score_delta.png`; `k` unused)."""
    diff = diff_risk(production, shadow, window)
    png = write_delta_histogram(report_dir / "score_delta.png", diff.deltas, f"{title}: score deltas")
    return DiffOutcome(diff.as_json(), format_risk(diff), png)
