"""Feedback labels as the loop reads them: the first label of each event id known by a time, the malformed ones
dead-lettered; and `DatasetReport`, what a dataset build read, joined, dropped and wrote."""

from __future__ import annotations

from dataclasses import dataclass

from operators.dead_letter import dead_letter_json
from operators.decoding import Rejection
from operators.feedback import Label, label_decoder
from pipelines.kafka.clients import ensure_topics, publish_records
from pipelines.kafka.topic_reader import TopicRecord, read_records


@dataclass
class DatasetReport:
    """What a build read, joined, dropped and wrote (a pipeline's builder may add its own counts)."""

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

    def details(self) -> str:
        """What this pipeline's build adds to the common counts, in words (empty: nothing)."""
        return ""


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
