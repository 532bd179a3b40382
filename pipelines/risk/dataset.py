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

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from operators.feedback import Label
from operators.risk.features import FEATURE_NAMES
from operators.risk.schemas import RiskResult
from pipelines.exceptions import ConfigError
from pipelines.kafka.changelog import versions_of
from pipelines.kafka.topic_reader import read_records
from pipelines.loop.dataset_file import write_dataset
from pipelines.loop.labels import DatasetReport, known_labels

#: The Parquet column of each feature (a prefix keeps them apart from the result's fields).
FEATURE_COLUMNS = tuple(f"f_{name}" for name in FEATURE_NAMES)


class RiskDatasetReport(DatasetReport):
    """`DatasetReport`, whose `missing_features` counts the labelled results without their state version."""

    def details(self) -> str:
        """The labelled results left out for want of their features."""
        return f"results without their state version: {self.missing_features:,}"


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
) -> RiskDatasetReport:
    """Join the labels of `feedback_topic` known by `until_ms` to the results of `results_topic` up to it, with
    features from `changelog_topic`, into the Parquet file `out` (module doc)."""
    import pyarrow as pa

    report = RiskDatasetReport(path=str(out))
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
    write_dataset(out, columns, "risk", {"results_topic": results_topic, "feedback_topic": feedback_topic,
                                         "changelog_topic": changelog_topic, "until_ms": until_ms,
                                         "feature_names": list(FEATURE_NAMES)}, report)
    return report
