"""Feedback labels and point-in-time training sets on the real broker and a real Flink job.

`publish feedback risk` sends the late labels of the synthetic stream; `dataset build risk` joins them to the
job's results with the features from the state version each result names. The test shows the point-in-time
property: the dataset's features are exactly the as-of ones (the account's events up to that one), the
model on them gives the result's score, and features recomputed after the fact (from the account's state
once all its events were applied) differ for events whose account saw later events. Malformed, duplicate,
unknown and not-yet-known labels are each handled as documented, and nothing else is lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from models.registry import ModelRegistry
from models.synthetic import generate_transactions
from operators.dead_letter import DeadLetter
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, TransactionView, update
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.loop.dataset_file import dataset_metadata
from pipelines.loop.feedback import synthetic_labels
from pipelines.risk.dataset import FEATURE_COLUMNS
from pipelines.risk.training import risk_dataset

from .conftest import Topics, run_bounded, streamscore

pytestmark = pytest.mark.integration

EVENTS, SEED = 2_000, 5


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_dataset_rows_carry_the_features_the_model_scored_not_recomputed_ones(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    changelog, feedback, dlq = topics.output + ".changelog", topics.input + ".feedback", topics.dlq + ".feedback"
    ensure_topics(bootstrap, [changelog, feedback])
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--events", str(EVENTS), "--seed", str(SEED),
                "--topic", topics.input)
    run_bounded(bootstrap, topics, tmp_path / "checkpoints", "--state-changelog", changelog)
    streamscore("--bootstrap", bootstrap, "publish", "feedback", "risk", "--events", str(EVENTS), "--seed",
                str(SEED), "--topic", feedback)
    labels = synthetic_labels("risk", EVENTS, SEED)
    first = labels[0]
    flipped = {**first, "label": 1 - int(first["label"]), "labelled_at": int(first["labelled_at"]) + 1}
    extra = [
        msgspec.json.encode(flipped),  # a second label of an event: ignored, counted
        msgspec.json.encode({"event_id": "never-scored", "label": 1, "labelled_at": first["labelled_at"]}),
        b'{"event_id": "x", "label": 7, "labelled_at": 1767225600000}',  # malformed: dead-lettered
    ]
    publish_records(bootstrap, feedback, [(None, value) for value in extra])
    last_known = max(int(label["labelled_at"]) for label in labels)

    out = tmp_path / "all.parquet"
    streamscore("--bootstrap", bootstrap, "dataset", "build", "risk", "--results", topics.output, "--feedback",
                feedback, "--changelog", changelog, "--until", _iso(last_known + 1_000), "--out", str(out),
                "--dlq", dlq)
    table = pq.read_table(out).to_pydict()
    report = dataset_metadata(out)["report"]
    assert report["rows"] == EVENTS == len(table["event_id"])
    assert (report["duplicate_labels"], report["unknown_labels"], report["malformed_labels"]) == (1, 1, 1)
    assert report["late_labels"] == 0 and report["missing_features"] == 0
    [letter] = [msgspec.json.decode(r.value, type=DeadLetter) for r in consume(bootstrap, dlq, timeout_s=3)]
    assert letter.reason == "invalid_value" and letter.topic == feedback
    truth = {str(label["event_id"]): int(label["label"]) for label in labels}
    assert {e: int(v) for e, v in zip(table["event_id"], table["label"], strict=True)} == truth
    assert table["ts"] == sorted(table["ts"])

    rows = np.column_stack([np.asarray(table[c], dtype=np.float32) for c in FEATURE_COLUMNS])
    stream = generate_transactions(EVENTS, SEED)
    as_of = risk_dataset(stream)  # each event's vector from its account's events up to it (in ts order)
    position = {str(e["event_id"]): i for i, e in enumerate(stream)}
    order = [position[e] for e in table["event_id"]]
    np.testing.assert_array_equal(rows, as_of.features[order])
    # the model on the dataset's features gives each result's score (the vector the model saw)
    handle = ModelRegistry().load("risk")
    probability = handle.run({"features": rows})["probability"].reshape(-1)
    assert np.abs(probability - np.asarray(table["score"])).max() < 1e-6
    # recomputed after the fact, from each account's state after all its events: other values wherever the
    # account had later events
    final: dict[str, RiskFeatureState] = {}
    for e in stream:
        final[str(e["account_id"])], _ = update(final.get(str(e["account_id"])) or RiskFeatureState(), _view(e))
    later = Counter(str(e["account_id"]) for e in stream)
    seen: Counter[str] = Counter()
    differs = same = 0
    for i, e in enumerate(stream):
        account = str(e["account_id"])
        seen[account] += 1
        if seen[account] == later[account]:
            continue  # the account's last event: nothing came after it
        _, recomputed = update(final[account], _view(e))
        differs += int(not np.array_equal(np.asarray(recomputed, dtype=np.float32), as_of.features[i]))
        same += 1
    assert same > EVENTS // 2 and differs == same  # every one of them would be skewed

    # drift between the middle and the last third of the stream (the default reference: the window before the
    # current one), on the same point-in-time vectors
    drift_dir = tmp_path / "drift"
    first, last = min(table["ts"]), max(table["ts"])
    window_h = (last - first) / 3_600_000 / 3
    streamscore("--bootstrap", bootstrap, "drift", "risk", "--results", topics.output, "--changelog", changelog,
                "--window", str(window_h), "--report-dir", str(drift_dir))
    drift = json.loads((drift_dir / "drift.json").read_text())
    window_ms = int(window_h * 3_600_000)
    assert drift["reference_rows"] == sum(1 for t in table["ts"] if last - 2 * window_ms <= t < last - window_ms)
    assert drift["current_rows"] == sum(1 for t in table["ts"] if t >= last - window_ms)
    assert list(drift["feature_psi"]) == list(FEATURE_NAMES) and (drift_dir / "drift.png").exists()
    flagged = [n for n, v in drift["feature_psi"].items() if v >= 0.2] + ["score"] * (drift["score_psi"] >= 0.2)
    assert drift["flagged"] == flagged

    # labels known later than --until are left out, and so are results after it
    until = int(sorted(int(label["labelled_at"]) for label in labels)[EVENTS // 2])
    early = tmp_path / "early.parquet"
    streamscore("--bootstrap", bootstrap, "dataset", "build", "risk", "--results", topics.output, "--feedback",
                feedback, "--changelog", changelog, "--until", _iso(until), "--out", str(early), "--dlq", dlq)
    part = pq.read_table(early).to_pydict()
    meta = dataset_metadata(early)["report"]
    assert 0 < meta["rows"] < EVENTS and meta["late_labels"] > 0
    assert max(part["labelled_at"]) <= until and max(part["ts"]) <= until


def _view(event: dict[str, object]) -> TransactionView:
    return TransactionView(float(event["amount"]), str(event["merchant_id"]), str(event["country"]),
                           str(event["device_id"]), int(event["ts"]))
