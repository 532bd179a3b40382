"""Point-in-time training sets of the recommender: the sessions as they were clicked up to `until`, what
production recommended after each click, and the purchases known by `until`.

`build_reco_dataset` reads three topics to their current end (read_committed):
- the click events (the job's input): a session's items in event order, the training input of the GRU; an
  event that is not a valid click was dead-lettered by the job and has no result, so it is not a row;
- the results (`RecoResult`: `event_id`, `session_id`, `items`, `model`, `state_version`, `ts`): what the
  serving model recommended after each click - the production side of every comparison, as served, never
  re-run; an at-least-once repeat of an event id counts once;
- the feedback (`operators.feedback.Label`, `publish feedback reco`): whether the session bought the click's
  item, as the order system reported it. Labels are read as for risk (`pipelines.loop.labels.read_labels`: known
  by `until`, first wins, malformed ones dead-lettered, unknown event ids counted and ignored). A row whose
  label is not known by `until` has `label` null: its click still trains the next-item model, it just does not
  count as a purchase.
and writes one Parquet row per scored click up to `until` (by event time), ordered by `(ts, event_id)`:
`event_id`, `user_id`, `session_id`, `item_id`, `action`, `ts`, `model`, `state_version`, `recommended`
(list of item ids), `label`, `labelled_at`, `label_source`; the file's metadata names the topics, `until`, the
time range and the counts (`pipelines.loop.dataset_file.dataset_metadata` reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from operators.decoding import Rejection
from operators.reco.decoding import click_decoder
from operators.reco.schemas import Click, RecoResult
from pipelines.kafka.topic_reader import read_records
from pipelines.loop.dataset_file import write_dataset
from pipelines.loop.labels import DatasetReport, known_labels


@dataclass
class RecoDatasetReport(DatasetReport):
    """`DatasetReport` plus the sessions written and the results whose click was not on the events topic."""

    sessions: int = 0
    missing_events: int = 0

    def details(self) -> str:
        """The sessions written and the results whose click is missing."""
        return f"{self.sessions:,} sessions; results without their click on the events topic: {self.missing_events:,}"


def _clicks(bootstrap: str, topic: str, until_ms: int) -> dict[str, Click]:
    """The valid clicks of `topic` up to `until_ms`, by event id (the first of a repeated id)."""
    decoder = click_decoder()
    clicks: dict[str, Click] = {}
    for record in read_records(bootstrap, topic):
        click = decoder.decode(record.value)
        if not isinstance(click, Rejection) and click.ts <= until_ms:
            clicks.setdefault(click.event_id, click)
    return clicks


def build_reco_dataset(
    bootstrap: str, *, events_topic: str, results_topic: str, feedback_topic: str, until_ms: int, out: Path,
    dlq_topic: str,
) -> RecoDatasetReport:
    """Join the clicks of `events_topic`, the results of `results_topic` and the purchases of `feedback_topic`
    known by `until_ms` into the Parquet file `out` (module doc)."""
    import pyarrow as pa

    report = RecoDatasetReport(path=str(out))
    labels = known_labels(bootstrap, feedback_topic, until_ms, dlq_topic, report, "reco")
    clicks = _clicks(bootstrap, events_topic, until_ms)
    results: dict[str, RecoResult] = {}
    decode_result = msgspec.json.Decoder(RecoResult).decode
    for record in read_records(bootstrap, results_topic):
        result = decode_result(record.value)
        if result.ts <= until_ms:
            results.setdefault(result.event_id, result)
    report.results = len(results)
    report.missing_events = sum(1 for event_id in results if event_id not in clicks)
    rows = sorted((r for r in results.values() if r.event_id in clicks), key=lambda r: (r.ts, r.event_id))
    chosen = [labels.get(r.event_id) for r in rows]
    report.unknown_labels = sum(1 for event_id in labels if event_id not in results)
    report.unlabelled_results = sum(1 for label in chosen if label is None)
    report.rows = len(rows)
    report.positives = sum(label.label for label in chosen if label is not None)
    report.sessions = len({r.session_id for r in rows})
    report.first_ts = rows[0].ts if rows else None
    report.last_ts = rows[-1].ts if rows else None
    columns: dict[str, Any] = {
        "event_id": [r.event_id for r in rows], "user_id": [r.user_id for r in rows],
        "session_id": [r.session_id for r in rows],
        "item_id": pa.array([clicks[r.event_id].item_id for r in rows], pa.int64()),
        "action": [clicks[r.event_id].action for r in rows],
        "ts": pa.array([r.ts for r in rows], pa.int64()), "model": [r.model for r in rows],
        "state_version": pa.array([r.state_version for r in rows], pa.int64()),
        "recommended": pa.array([r.items for r in rows], pa.list_(pa.int64())),
        "label": pa.array([None if label is None else label.label for label in chosen], pa.int8()),
        "labelled_at": pa.array([None if label is None else label.labelled_at for label in chosen], pa.int64()),
        "label_source": [None if label is None else label.source for label in chosen],
    }
    write_dataset(out, columns, "reco", {"events_topic": events_topic, "results_topic": results_topic,
                                         "feedback_topic": feedback_topic, "until_ms": until_ms}, report)
    return report
