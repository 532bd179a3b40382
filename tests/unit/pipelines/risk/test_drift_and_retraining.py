"""PSI (the drift measure) and the time-ordered splits models are trained and compared on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.risk.features import FEATURE_NAMES
from pipelines.exceptions import ConfigError
from pipelines.loop.dataset_file import dataset_metadata
from pipelines.risk.dataset import FEATURE_COLUMNS
from pipelines.risk.drift import psi
from pipelines.risk.retraining import load_splits, production_metrics


def test_psi_is_near_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 1, 20_000)
    assert psi(reference, rng.normal(0, 1, 20_000)) < 0.01
    assert 0.1 < psi(reference, rng.normal(0.5, 1, 20_000)) < psi(reference, rng.normal(1.5, 1, 20_000))


def test_psi_sees_a_new_population_in_a_tail_and_handles_flags() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 1, 20_000)
    current = np.concatenate([rng.normal(0, 1, 19_000), rng.normal(-6, 0.3, 1_000)])  # 5 % far below
    assert psi(reference, current) > 0.1  # a "moderate shift" from 5 % of the events (deciles alone: ~0.02)
    flags = (rng.random(10_000) < 0.1).astype(float)
    assert psi(flags, (rng.random(10_000) < 0.1).astype(float)) < 0.01
    assert psi(flags, (rng.random(10_000) < 0.3).astype(float)) > 0.2


def _dataset(path: Path, labels: list[int], names: tuple[str, ...] = FEATURE_NAMES, pipeline: str = "risk") -> Path:
    n = len(labels)
    ts = np.arange(n)[::-1] + 1_767_225_600_000  # written newest first: the splits must sort by time
    columns = {"event_id": [f"e{i}" for i in range(n)], "ts": ts, "label": labels,
               "score": np.linspace(0, 1, n)}
    columns |= {c: np.full(n, i, dtype=np.float32) for i, c in enumerate(FEATURE_COLUMNS)}
    meta = {"pipeline": pipeline, "feature_names": list(names), "until_ms": 1, "report": {}}
    pq.write_table(pa.table(columns).replace_schema_metadata({"streamscore": json.dumps(meta)}), path)
    return path


def test_splits_are_in_time_order_holdout_newest(tmp_path: Path) -> None:
    labels = [i % 2 for i in range(100)]
    splits = load_splits(_dataset(tmp_path / "d.parquet", labels), holdout_share=0.2)
    assert (splits.train, splits.validation, splits.holdout) == (slice(0, 64), slice(64, 80), slice(80, 100))
    assert list(splits.ts) == sorted(splits.ts)
    assert splits.ts[splits.train].max() < splits.ts[splits.holdout].min()
    assert set(production_metrics(splits)) == {"roc_auc", "pr_auc"}
    assert dataset_metadata(tmp_path / "d.parquet")["until_ms"] == 1


def test_splits_refuse_another_pipelines_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a reco dataset; risk models train on `streamscore dataset build risk`"):
        load_splits(_dataset(tmp_path / "d.parquet", [i % 2 for i in range(100)], pipeline="reco"))


def test_splits_refuse_a_split_with_one_class_or_other_features(tmp_path: Path) -> None:
    labels = [1] * 20 + [i % 2 for i in range(80)]  # written newest first: the holdout (newest) is all 1s
    with pytest.raises(ConfigError, match=r"holdout split .* does not hold both labels"):
        load_splits(_dataset(tmp_path / "one.parquet", labels))
    with pytest.raises(ConfigError, match="rebuild it"):
        load_splits(_dataset(tmp_path / "old.parquet", [i % 2 for i in range(50)], ("x",) * len(FEATURE_NAMES)))
    with pytest.raises(ConfigError, match="not a streamscore dataset"):
        pq.write_table(pa.table({"a": [1]}), tmp_path / "plain.parquet")
        load_splits(tmp_path / "plain.parquet")


@pytest.mark.parametrize("seed", [21, 5])
def test_the_positives_drift_flags_what_a_new_fraud_pattern_changes_and_only_that(seed: int) -> None:
    from models.synthetic import generate_transactions
    from pipelines.risk.definition import EMERGING_FROM, EMERGING_RATE
    from pipelines.risk.drift import positive_drift
    from pipelines.risk.training import risk_dataset

    flagged = {}
    for scenario in (True, False):
        events = generate_transactions(40_000, seed, emerging_from=EMERGING_FROM if scenario else None,
                                       emerging_rate=EMERGING_RATE)
        data = risk_dataset(events)
        ts = np.array([e["ts"] for e in events])
        first, last = ts.min(), ts.max()
        positive = data.labels == 1
        reference = data.features[positive & (ts < first + (last - first) / 3)]
        current = data.features[positive & (ts >= last - (last - first) / 3)]
        flagged[scenario] = set(positive_drift(reference, current).flagged)
    changed = {"log_amount", "amount_z", "log_amount_vs_mean"}  # micro_drain: tiny amounts for the account
    assert changed <= flagged[True]
    # without the new pattern only log_count moves: a job that starts with the stream counts each account's
    # events from its own start, so the lifetime count of the frauds' accounts grows with the job's age
    assert flagged[False] == {"log_count"}


def test_the_default_windows_are_the_last_two_and_refuse_a_span_shorter_than_both() -> None:
    from pipelines.risk.drift import windows

    assert windows(0, 100, 30) == ((40, 70), (70, 101))
    assert windows(0, 100, 30, reference=(0, 30)) == ((0, 30), (70, 101))
    with pytest.raises(ConfigError, match="less than the two windows"):
        windows(0, 100, 60)
    with pytest.raises(ConfigError, match="reference ends after"):
        windows(0, 100, 30, reference=(0, 80))


@pytest.mark.parametrize("seed", [5, 9, 21])
def test_drift_on_the_default_stream_flags_nothing_at_the_default_threshold(seed: int) -> None:
    """`drift risk`'s comparison (defaults: the last 24 h against the 24 h before, PSI 0.2) on the features a job
    scores (the operator's, as `risk_dataset` folds them) and the shipped model's scores: nothing drifts on the
    default synthetic stream. Against the job's first 24 h (its state's warm-up) the history features would."""
    from models.registry import SHIPPED_ROOT, ModelRegistry
    from models.synthetic import generate_transactions
    from pipelines.risk.drift import DEFAULT_THRESHOLD, compare_windows, windows
    from pipelines.risk.training import risk_dataset

    events = generate_transactions(40_000, seed)
    data = risk_dataset(events)
    scores = ModelRegistry(SHIPPED_ROOT).load("risk").run({"features": data.features})["probability"]
    ts = np.array([e["ts"] for e in events])
    day = 24 * 3_600_000
    reference, current = windows(int(ts.min()), int(ts.max()), day)
    report = compare_windows(ts, data.features, scores, reference, current)
    assert report.threshold == DEFAULT_THRESHOLD and report.current_rows > 1_000
    assert report.flagged == [], (report.feature_psi, report.score_psi)
    warm_up = compare_windows(ts, data.features, scores, (int(ts.min()), int(ts.min()) + day), current)
    assert {"log_count", "amount_z", "velocity_24h"} <= set(warm_up.flagged)


@pytest.mark.parametrize("seed", [5, 21])
def test_drift_with_the_emerging_fraud_flags_the_amount_features_among_the_frauds(seed: int) -> None:
    """`drift risk --feedback` with a reference before the new pattern (the first third of the span against the
    last): the label-1 events' amount features are flagged."""
    from models.registry import SHIPPED_ROOT, ModelRegistry
    from models.synthetic import generate_transactions
    from pipelines.risk.definition import EMERGING_FROM, EMERGING_RATE
    from pipelines.risk.drift import compare_windows, windows
    from pipelines.risk.training import risk_dataset

    events = generate_transactions(40_000, seed, emerging_from=EMERGING_FROM, emerging_rate=EMERGING_RATE)
    data = risk_dataset(events)
    scores = ModelRegistry(SHIPPED_ROOT).load("risk").run({"features": data.features})["probability"]
    ts = np.array([e["ts"] for e in events])
    third = int((ts.max() - ts.min()) / 3)
    reference, current = windows(int(ts.min()), int(ts.max()), third, (int(ts.min()), int(ts.min()) + third))
    report = compare_windows(ts, data.features, scores, reference, current, positive=data.labels == 1)
    assert report.positives is not None
    assert {"log_amount", "amount_z", "log_amount_vs_mean"} <= set(report.positives.flagged)
