"""The diff report of a backtest: production results vs shadow results of the same events, joined on event_id.

Pure Python (numpy for percentiles; matplotlib only to draw a histogram). Inputs are decoded result objects
(`dict`s as read from the topics); nothing here talks to Kafka or Flink. What is compared is the pipeline's
(`PipelineDefinition.backtest_diff`: risk's decision flips and score deltas, `pipelines.risk.backtest`; reco's
overlap@k, `pipelines.reco.backtest`); a pipeline that declares none gets `diff_results`: how many results are
unchanged, compared whole but for when and by which model they were made (`scored_at`, `model`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Result = Mapping[str, Any]
#: What `diff_results` leaves out: when a result was made, and by which model (it differs by design).
IGNORED = frozenset({"scored_at", "model"})


@dataclass(frozen=True)
class DiffOutcome:
    """A pipeline's diff of a backtest: its JSON summary, a short text and the chart it drew."""

    summary: dict[str, Any]
    text: str
    png: Path


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


def diff_results(production: IndexedResults, shadow: IndexedResults, window: set[str] | None, *, k: int,
                 title: str, report_dir: Path) -> DiffOutcome:
    """The diff of a pipeline that declares none: results compared whole but for `IGNORED` (`k` unused)."""
    joined = join(production.by_event, shadow.by_event, window)

    def comparable(result: Result) -> dict[str, Any]:
        return {key: value for key, value in result.items() if key not in IGNORED}

    changed = [e for e in joined.both if comparable(production.by_event[e]) != comparable(shadow.by_event[e])]
    summary = {"compared": len(joined.both), "unchanged": len(joined.both) - len(changed), "changed": len(changed),
               "missing_in_shadow": len(joined.missing_in_shadow),
               "missing_in_production": len(joined.missing_in_production),
               "duplicates_production": production.duplicates, "duplicates_shadow": shadow.duplicates,
               "production_models": models_of(r for e, r in production.by_event.items() if e in set(joined.both)),
               "shadow_models": models_of(shadow.by_event.values()), "examples_changed": changed[:10]}
    png = write_histogram(report_dir / "changed.png", [float(e in set(changed)) for e in joined.both], title,
                          "result changed (0: no, 1: yes)", bins=2, zero_line=False)
    text = (f"compared {len(joined.both)} events: {summary['unchanged']} results unchanged, {len(changed)} changed\n"
            f"missing in shadow: {len(joined.missing_in_shadow)}; missing in production: "
            f"{len(joined.missing_in_production)}")
    return DiffOutcome(summary, text, png)


def models_of(results: Iterable[Result]) -> dict[str, int]:
    """Results per model and where it ran: `risk@3` in-process, `risk-large@1 on server` on a model server,
    `risk-large@1 fallback` in-process after its server failed (the results' `model`, `backend`, `fallback`)."""
    return dict(sorted(Counter(scored_by(r) for r in results).items()))


def scored_by(result: Result) -> str:
    model = str(result.get("model"))
    if result.get("backend"):
        return f"{model} on {result['backend']}"
    return f"{model} fallback" if result.get("fallback") else model


def write_json(path: Path, summary: Mapping[str, Any]) -> Path:
    """Write the JSON summary (indented, keys in insertion order); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def write_histogram(path: Path, values: list[float], title: str, xlabel: str, *, bins: int,
                    zero_line: bool) -> Path:
    """A histogram PNG of `values` (log-scaled counts; an empty plot says there was nothing to compare)."""
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


