"""Drift of a risk job's inputs and scores: the population stability index (PSI) of every feature the model
scored and of the score itself, between a reference window and the current one (event time).

The reference defaults to the window just before the current one (`windows`): a job that starts with the stream
spends its first window warming up (every account's first events, lifetime counts near zero, no history for
`amount_z` or the velocities), so a reference there flags the history features whatever the stream does. Give
an explicit reference (`--reference`) to compare with a fixed period, e.g. the one before a suspected change.

The features are the ones each result's state version holds (the state changelog), the same point-in-time
vectors as `pipelines.risk.dataset`. PSI = sum over bins of (current share - reference share) * ln(current share /
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
from pipelines.exceptions import ConfigError
from pipelines.kafka.topic_reader import read_records
from pipelines.loop.labels import read_labels
from pipelines.risk.dataset import scored_features

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
    """The two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (scipy's `ks_2samp`)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(reference, current, method="asymp")
    return float(result.statistic), float(result.pvalue)


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


def windows(first: int, last: int, window_ms: int,
            reference: tuple[int, int] | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """(reference, current) windows of results whose event times run from `first` to `last`: the current one is
    the last `window_ms`, the reference by default the `window_ms` before it; `ConfigError` when the reference
    starts before the first result (or, given, ends after the current one starts)."""
    current = (last - window_ms, last + 1)
    chosen = reference or (current[0] - window_ms, current[0])
    if chosen[1] > current[0] or (reference is None and chosen[0] < first):
        raise ConfigError(f"the results span {(last - first) / 3_600_000:.1f} h, less than the two windows compared "
                          f"({2 * window_ms / 3_600_000:.1f} h; or the reference ends after the current window "
                          "starts): choose a shorter --window or a --reference")
    return chosen, current


def _windowed(bootstrap: str, results_topic: str, window_ms: int,
              reference: tuple[int, int] | None) -> tuple[list[RiskResult], tuple[int, int], tuple[int, int]]:
    decode = msgspec.json.Decoder(RiskResult).decode
    results = {r.event_id: r for r in (decode(x.value) for x in read_records(bootstrap, results_topic))}
    if not results:
        raise ConfigError(f"{results_topic!r} holds no results")
    times = [r.ts for r in results.values()]
    reference, current = windows(min(times), max(times), window_ms, reference)
    chosen = [r for r in results.values() if reference[0] <= r.ts < reference[1] or current[0] <= r.ts < current[1]]
    return chosen, reference, current


def compare_windows(
    ts: np.ndarray, features: np.ndarray, scores: np.ndarray, reference: tuple[int, int], current: tuple[int, int],
    *, threshold: float = DEFAULT_THRESHOLD, positive: np.ndarray | None = None,
) -> DriftReport:
    """The drift report of scored rows (event times `ts`, feature rows in `FEATURE_NAMES` order, `scores`)
    between two windows [from, to) of event time; with `positive` (a label-1 mask) also `positive_drift`.
    `ConfigError` when a window holds no row (or, with `positive`, fewer than two positives)."""
    in_ref = (ts >= reference[0]) & (ts < reference[1])
    in_cur = (ts >= current[0]) & (ts < current[1])
    if not in_ref.any() or not in_cur.any():
        raise ConfigError(f"no scored results in the {'reference' if not in_ref.any() else 'current'} window")
    ref, cur = features[in_ref], features[in_cur]
    score_mean = (round(float(np.mean(scores[in_ref])), 6), round(float(np.mean(scores[in_cur])), 6))
    report = DriftReport(reference, current, len(ref), len(cur), threshold,
                         round(psi(scores[in_ref], scores[in_cur]), 5), score_mean=score_mean)
    for i, name in enumerate(FEATURE_NAMES):
        report.feature_psi[name] = round(psi(ref[:, i], cur[:, i]), 5)
    report.flagged = [name for name, value in report.feature_psi.items() if value >= threshold]
    if report.score_psi >= threshold:
        report.flagged.append("score")
    if positive is not None:
        ref_positive, cur_positive = in_ref & positive, in_cur & positive
        if ref_positive.sum() < 2 or cur_positive.sum() < 2:
            raise ConfigError(f"fewer than 2 label-1 results in a window ({int(ref_positive.sum())} reference, "
                              f"{int(cur_positive.sum())} current): widen --window or wait for more feedback")
        report.positives = positive_drift(features[ref_positive], features[cur_positive])
    return report


def measure_drift(
    bootstrap: str, *, results_topic: str, changelog_topic: str, window_ms: int,
    reference: tuple[int, int] | None = None, threshold: float = DEFAULT_THRESHOLD, feedback_topic: str | None = None,
) -> tuple[DriftReport, dict[str, np.ndarray]]:
    """PSI between the reference window (default: the `window_ms` before the current one, `windows`) and the
    last `window_ms` of event time, and with `feedback_topic` the positives' drift (`positive_drift`); also the
    raw score arrays (for the plot)."""
    chosen, ref_window, cur_window = _windowed(bootstrap, results_topic, window_ms, reference)
    vectors = scored_features(bootstrap, changelog_topic, {(r.account_id, r.state_version, r.ts) for r in chosen})
    positives = _positive_ids(bootstrap, feedback_topic) if feedback_topic else None
    rows: list[list[float]] = []
    kept: list[RiskResult] = []
    for r in chosen:
        vector = vectors.get((r.account_id, r.state_version, r.ts))
        if vector is not None and len(vector) == len(FEATURE_NAMES):
            rows.append(vector)
            kept.append(r)
    ts = np.array([r.ts for r in kept], dtype=np.int64)
    scores = np.array([r.score for r in kept], dtype=np.float64)
    for name, window in (("reference", ref_window), ("current", cur_window)):
        if not np.any((ts >= window[0]) & (ts < window[1])):
            raise ConfigError(f"no results with their state version on {changelog_topic!r} in the {name} window: "
                              "run the job with --state-changelog")
    features = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(FEATURE_NAMES))
    positive = None if positives is None else np.array([r.event_id in positives for r in kept], dtype=bool)
    report = compare_windows(ts, features, scores, ref_window, cur_window, threshold=threshold, positive=positive)
    in_ref = (ts >= ref_window[0]) & (ts < ref_window[1])
    return report, {"reference": scores[in_ref], "current": scores[~in_ref]}


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
