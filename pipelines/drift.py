"""Drift of a risk job's inputs and scores: the population stability index (PSI) of every feature the model
scored and of the score itself, between a reference window and the current one (event time).

The features are the ones each result's state version holds (the state changelog), the same point-in-time
vectors as `pipelines.datasets`. PSI = sum over bins of (current share - reference share) * ln(current share /
reference share); bins are the reference's deciles and 0.5 %/1 % tails (a feature with at most `MAX_DISCRETE`
distinct values in the reference, e.g. the 0/1 flags, gets one bin per value); empty shares count as `EPSILON`.
The common reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a large one; a feature at or above
`threshold` is flagged. `drift_report` writes JSON (+ PNG: PSI per feature, and the score's histograms).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from operators.risk.features import FEATURE_NAMES
from operators.risk.schemas import RiskResult
from pipelines.backtest.topics import read_records
from pipelines.datasets import read_labels, scored_features
from pipelines.exceptions import ConfigError

DEFAULT_THRESHOLD = 0.2
#: Label-conditional drift (the positives' features): flagged when the two-sample KS test's p-value is below
#: `KS_ALPHA` and its statistic at least `KS_MIN_D` (a strict level: 12 features, a few hundred positives).
KS_ALPHA = 1e-6
KS_MIN_D = 0.2
EPSILON = 1e-4
MAX_DISCRETE = 10
#: Bin edges: the reference's deciles plus its 0.5 % and 1 % tails on both sides, so that a new population
#: in a tail (a fraud pattern the reference never had, a few % of events) shows.
TAIL_QUANTILES = np.array([0.005, 0.01, *np.linspace(0.1, 0.9, 9), 0.99, 0.995])


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The population stability index of `current` against `reference` (module doc)."""
    values = np.unique(reference)
    if len(values) <= MAX_DISCRETE:
        edges = np.concatenate([[-np.inf], (values[:-1] + values[1:]) / 2, [np.inf]])
    else:
        inner = np.unique(np.quantile(reference, TAIL_QUANTILES))
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
    ref = np.histogram(reference, edges)[0] / max(len(reference), 1)
    cur = np.histogram(current, edges)[0] / max(len(current), 1)
    ref, cur = np.maximum(ref, EPSILON), np.maximum(cur, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value."""
    a, b = np.sort(reference), np.sort(current)
    grid = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                            - np.searchsorted(b, grid, side="right") / len(b))))
    n = len(a) * len(b) / (len(a) + len(b))
    lam = (np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n)) * d
    k = np.arange(1, 101)
    p = float(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k * k * lam * lam)))
    return d, min(max(p, 0.0), 1.0)


@dataclass
class PositiveDrift:
    """How the labelled positives (e.g. frauds) of the current window differ from the reference's, per
    feature: what a new fraud pattern changes even when it is too rare to move the whole population."""

    reference_rows: int
    current_rows: int
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)


def positive_drift(reference: np.ndarray, current: np.ndarray) -> PositiveDrift:
    """KS and PSI per feature between the positives' feature rows of two windows; flagged by `KS_ALPHA` and
    `KS_MIN_D`."""
    result = PositiveDrift(len(reference), len(current))
    for i, name in enumerate(FEATURE_NAMES):
        d, p = ks_test(reference[:, i], current[:, i])
        result.features[name] = {"ks": round(d, 4), "p_value": float(f"{p:.3g}"),
                                 "psi": round(psi(reference[:, i], current[:, i]), 4)}
        if p < KS_ALPHA and d >= KS_MIN_D:
            result.flagged.append(name)
    return result


@dataclass
class DriftReport:
    """PSI per feature and of the score, which are flagged, and the windows compared."""

    reference: tuple[int, int]
    current: tuple[int, int]
    reference_rows: int
    current_rows: int
    threshold: float
    score_psi: float
    feature_psi: dict[str, float] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    score_mean: tuple[float, float] = (0.0, 0.0)
    #: With labels: the label-1 events' feature drift (None without `--feedback`).
    positives: PositiveDrift | None = None


def _windowed(bootstrap: str, results_topic: str, window_ms: int,
              reference: tuple[int, int] | None) -> tuple[list[RiskResult], tuple[int, int], tuple[int, int]]:
    decode = msgspec.json.Decoder(RiskResult).decode
    results = {r.event_id: r for r in (decode(x.value) for x in read_records(bootstrap, results_topic))}
    if not results:
        raise ConfigError(f"{results_topic!r} holds no results")
    times = [r.ts for r in results.values()]
    first, last = min(times), max(times)
    current = (last - window_ms, last + 1)
    reference = reference or (first, first + window_ms)
    if reference[1] > current[0]:
        raise ConfigError(f"the reference window ends after the current one starts (the results span "
                          f"{(last - first) / 3_600_000:.1f} h): choose a shorter --window or a --reference")
    chosen = [r for r in results.values() if reference[0] <= r.ts < reference[1] or current[0] <= r.ts < current[1]]
    return chosen, reference, current


def measure_drift(
    bootstrap: str, *, results_topic: str, changelog_topic: str, window_ms: int,
    reference: tuple[int, int] | None = None, threshold: float = DEFAULT_THRESHOLD, feedback_topic: str | None = None,
) -> tuple[DriftReport, dict[str, np.ndarray]]:
    """PSI between the reference window (default: the first `window_ms` of the results) and the last
    `window_ms` of event time, and with `feedback_topic` the positives' drift (`positive_drift`); also the raw
    score arrays (for the plot)."""
    chosen, ref_window, cur_window = _windowed(bootstrap, results_topic, window_ms, reference)
    vectors = scored_features(bootstrap, changelog_topic, {(r.account_id, r.state_version, r.ts) for r in chosen})
    ref_rows: list[list[float]] = []
    cur_rows: list[list[float]] = []
    ref_scores: list[float] = []
    cur_scores: list[float] = []
    positives = _positive_ids(bootstrap, feedback_topic) if feedback_topic else None
    ref_positive: list[list[float]] = []
    cur_positive: list[list[float]] = []
    for r in chosen:
        vector = vectors.get((r.account_id, r.state_version, r.ts))
        if vector is None or len(vector) != len(FEATURE_NAMES):
            continue
        in_reference = ref_window[0] <= r.ts < ref_window[1]
        (ref_rows if in_reference else cur_rows).append(vector)
        (ref_scores if in_reference else cur_scores).append(r.score)
        if positives is not None and r.event_id in positives:
            (ref_positive if in_reference else cur_positive).append(vector)
    if not ref_rows or not cur_rows:
        raise ConfigError(f"no results with their state version on {changelog_topic!r} in the "
                          f"{'reference' if not ref_rows else 'current'} window: run the job with --state-changelog")
    ref, cur = np.asarray(ref_rows, dtype=np.float32), np.asarray(cur_rows, dtype=np.float32)
    report = DriftReport(ref_window, cur_window, len(ref), len(cur), threshold,
                         round(psi(np.asarray(ref_scores), np.asarray(cur_scores)), 5),
                         score_mean=(round(float(np.mean(ref_scores)), 6), round(float(np.mean(cur_scores)), 6)))
    for i, name in enumerate(FEATURE_NAMES):
        report.feature_psi[name] = round(psi(ref[:, i], cur[:, i]), 5)
    report.flagged = [name for name, value in report.feature_psi.items() if value >= threshold]
    if report.score_psi >= threshold:
        report.flagged.append("score")
    if positives is not None:
        if len(ref_positive) < 2 or len(cur_positive) < 2:
            raise ConfigError(f"fewer than 2 label-1 results in a window ({len(ref_positive)} reference, "
                              f"{len(cur_positive)} current): widen --window or wait for more feedback")
        report.positives = positive_drift(np.asarray(ref_positive, dtype=np.float32),
                                          np.asarray(cur_positive, dtype=np.float32))
    return report, {"reference": np.asarray(ref_scores), "current": np.asarray(cur_scores)}


def _positive_ids(bootstrap: str, feedback_topic: str) -> set[str]:
    """The event ids labelled 1 on `feedback_topic` (the first label of an id wins; malformed ones skipped:
    `dataset build` dead-letters them)."""
    labels, _ = read_labels(bootstrap, feedback_topic)
    return {event_id for event_id, label in labels.items() if label.label == 1}


def write_drift_report(report: DriftReport, scores: dict[str, np.ndarray], folder: Path) -> tuple[Path, Path]:
    """`drift.json` and `drift.png` in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(report)
    json_path = folder / "drift.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    panels = 3 if report.positives is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5))
    bars, hist = axes[0], axes[1]
    names = [*report.feature_psi, "score"]
    values = [*report.feature_psi.values(), report.score_psi]
    bars.barh(names, values, color=["tab:red" if v >= report.threshold else "tab:blue" for v in values])
    bars.axvline(report.threshold, color="k", linestyle="--", label=f"threshold {report.threshold}")
    bars.set(title="PSI, current vs reference window", xlabel="PSI")
    bars.legend()
    bins = np.linspace(0, 1, 41)
    hist.hist(scores["reference"], bins=bins, alpha=0.6, density=True, label=f"reference ({report.reference_rows:,})")
    hist.hist(scores["current"], bins=bins, alpha=0.6, density=True, label=f"current ({report.current_rows:,})")
    hist.set(title="score", yscale="log", xlabel="score")
    hist.legend()
    if report.positives is not None:
        ks = axes[2]
        positives = report.positives
        names = list(positives.features)
        ks.barh(names, [positives.features[n]["ks"] for n in names],
                color=["tab:red" if n in positives.flagged else "tab:blue" for n in names])
        ks.axvline(KS_MIN_D, color="k", linestyle="--", label=f"D {KS_MIN_D} (and p < {KS_ALPHA:g})")
        ks.set(title=f"label-1 events: {positives.reference_rows:,} vs {positives.current_rows:,} (KS D)",
               xlabel="KS statistic")
        ks.legend()
    fig.tight_layout()
    png_path = folder / "drift.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
