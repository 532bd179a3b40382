"""Point-in-time training sets: labels joined to the results they are about, with the exact features the model
scored, taken from the state version each result names - never recomputed.

`build_risk_dataset` reads three topics to their current end (read_committed):
- the results (`RiskResult`: `event_id`, `account_id`, `state_version`, `ts`, `score`, `model` ...);
- the feedback (`operators.feedback.Label`): a malformed label is dead-lettered (reason codes as for events);
  a label known after `until` is left out (it was not known then); a second label of an event id is counted
  and ignored (the first to arrive wins); a label of an event id without a result up to `until` is counted
  and ignored (`unknown_labels`);
- the job's state changelog (`--state-changelog`): the version `(account_id, state_version)` written for the
  result's event (its `event_time` is the result's `ts`, which tells a key's lifetimes apart after expiry)
  holds `scored_features`, the vector the model scored.
and writes one Parquet row per labelled result up to `until` (by event time), ordered by `ts`: the result's
fields, `label`, `labelled_at`, `label_source`, and one float32 column per feature (`FEATURE_NAMES`); the
file's metadata names the topics, `until`, the time range and the counts.

Why not recompute: features recomputed from the account's history after the fact see events that came later
(train-serve skew); the changelog version is what the model saw, byte for byte.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from operators.dead_letter import dead_letter_json
from operators.decoding import Rejection
from operators.feedback import Label, label_decoder
from operators.risk.features import FEATURE_NAMES
from operators.risk.schemas import RiskResult
from pipelines.exceptions import ConfigError
from pipelines.kafka.changelog import versions_of
from pipelines.kafka.clients import ensure_topics, publish_records
from pipelines.kafka.topic_reader import TopicRecord, read_records

#: The Parquet column of each feature (a prefix keeps them apart from the result's fields).
FEATURE_COLUMNS = tuple(f"f_{name}" for name in FEATURE_NAMES)


@dataclass
class DatasetReport:
    """What a build read, joined, dropped and wrote."""

    path: str
    rows: int = 0
    positives: int = 0
    results: int = 0
    labels: int = 0
    malformed_labels: int = 0
    late_labels: int = 0
    duplicate_labels: int = 0
    unknown_labels: int = 0
    unlabelled_results: int = 0
    missing_features: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


def read_labels(
    bootstrap: str, topic: str, until_ms: int | None = None, report: DatasetReport | None = None
) -> tuple[dict[str, Label], list[tuple[TopicRecord, Rejection]]]:
    """The first label of each event id on `topic` known by `until_ms` (all when None), and the records that
    are not valid labels with why; `report` (if given) counts labels read, late and duplicate."""
    decoder = label_decoder()
    labels: dict[str, Label] = {}
    rejected: list[tuple[TopicRecord, Rejection]] = []
    for record in read_records(bootstrap, topic):
        decoded = decoder.decode(record.value)
        if isinstance(decoded, Rejection):
            rejected.append((record, decoded))
        elif until_ms is not None and decoded.labelled_at > until_ms:
            if report is not None:
                report.late_labels += 1
        elif decoded.event_id in labels:
            if report is not None:
                report.duplicate_labels += 1
        else:
            labels[decoded.event_id] = decoded
    if report is not None:
        report.labels = len(labels) + report.late_labels + report.duplicate_labels
    return labels, rejected


def known_labels(
    bootstrap: str, topic: str, until_ms: int, dlq_topic: str, report: DatasetReport, pipeline: str
) -> dict[str, Label]:
    """`read_labels`, with the malformed ones dead-lettered to `dlq_topic` (as `PIPELINE-feedback`)."""
    labels, rejected = read_labels(bootstrap, topic, until_ms, report)
    letters = [(None, dead_letter_json(f"{pipeline}-feedback", why.reason, why.error, record.value, topic=topic,
                                       partition=record.partition, offset=record.offset))
               for record, why in rejected]
    report.malformed_labels = len(letters)
    if letters:
        ensure_topics(bootstrap, [dlq_topic])
        publish_records(bootstrap, dlq_topic, letters)
    return labels


def scored_features(
    bootstrap: str, changelog_topic: str, wanted: set[tuple[str, int, int]]
) -> dict[tuple[str, int, int], list[float]]:
    """The scored feature vector of each wanted `(account_id, state_version, ts)`, from the state changelog (the
    version of that number whose event time is `ts`: a key's versions start again after it expired)."""
    features: dict[tuple[str, int, int], list[float]] = {}
    records = ((record.key, record.value) for record in read_records(bootstrap, changelog_topic))
    for version in versions_of(records):  # binary or JSON records; side entries and tombstones skipped
        coordinates = (version.key, version.version, version.event_time)
        if coordinates in wanted:
            features[coordinates] = list(version.value.get("scored_features", []))
    return features


def build_risk_dataset(
    bootstrap: str, *, results_topic: str, feedback_topic: str, changelog_topic: str, until_ms: int, out: Path,
    dlq_topic: str,
) -> DatasetReport:
    """Join the labels of `feedback_topic` known by `until_ms` to the results of `results_topic` up to it, with
    features from `changelog_topic`, into the Parquet file `out` (module doc)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = DatasetReport(path=str(out))
    labels = known_labels(bootstrap, feedback_topic, until_ms, dlq_topic, report, "risk")
    wanted: dict[tuple[str, int, int], tuple[RiskResult, Label]] = {}
    seen: set[str] = set()
    decode_result = msgspec.json.Decoder(RiskResult).decode
    for record in read_records(bootstrap, results_topic):
        result = decode_result(record.value)
        if result.ts > until_ms or result.event_id in seen:  # later than `until`, or an at-least-once repeat
            continue
        seen.add(result.event_id)
        report.results += 1
        label = labels.get(result.event_id)
        if label is None:
            report.unlabelled_results += 1
            continue
        wanted[(result.account_id, result.state_version, result.ts)] = (result, label)
    report.unknown_labels = sum(1 for event_id in labels if event_id not in seen)
    features = scored_features(bootstrap, changelog_topic, set(wanted))
    rows = sorted((c for c in wanted if len(features.get(c, ())) == len(FEATURE_NAMES)),
                  key=lambda c: (wanted[c][0].ts, wanted[c][0].event_id))
    report.missing_features = len(wanted) - len(rows)
    if wanted and not rows:
        raise ConfigError(
            f"none of the {len(wanted)} labelled results has its state version on {changelog_topic!r}: run the job "
            "with --state-changelog TOPIC and build from that topic"
        )
    results = [wanted[c][0] for c in rows]
    chosen = [wanted[c][1] for c in rows]
    matrix = np.array([features[c] for c in rows], dtype=np.float32).reshape(len(rows), len(FEATURE_NAMES))
    columns: dict[str, Any] = {
        "event_id": [r.event_id for r in results], "account_id": [r.account_id for r in results],
        "ts": pa.array([r.ts for r in results], pa.int64()),
        "state_version": pa.array([r.state_version for r in results], pa.int64()),
        "model": [r.model for r in results], "score": pa.array([r.score for r in results], pa.float64()),
        "decision": [r.decision for r in results],
        "label": pa.array([label.label for label in chosen], pa.int8()),
        "labelled_at": pa.array([label.labelled_at for label in chosen], pa.int64()),
        "label_source": [label.source for label in chosen],
    }
    columns |= {name: matrix[:, i] for i, name in enumerate(FEATURE_COLUMNS)}
    report.rows = len(rows)
    report.positives = sum(label.label for label in chosen)
    report.first_ts = results[0].ts if results else None
    report.last_ts = results[-1].ts if results else None
    metadata = {"pipeline": "risk", "results_topic": results_topic, "feedback_topic": feedback_topic,
                "changelog_topic": changelog_topic, "until_ms": until_ms, "feature_names": list(FEATURE_NAMES),
                "built_at_ms": int(time.time() * 1000), "report": asdict(report)}
    table = pa.table(columns).replace_schema_metadata({"streamscore": json.dumps(metadata)})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return report


def dataset_metadata(path: Path) -> dict[str, Any]:
    """The `streamscore` metadata a dataset file was written with (topics, until, time range, counts)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"streamscore")
    if raw is None:
        raise ConfigError(f"{path} is not a streamscore dataset (no streamscore metadata): build it with "
                          "`streamscore dataset build`")
    return dict(json.loads(raw))
