"""The toy pipeline's closed loop: the feedback says whether an event's user turned out a regular (their count
reached `REGULAR_FROM`); the dataset is the labelled results (count, score); a candidate is the threshold that
classifies the rows before the time-ordered holdout best; the metric is accuracy. Everything else - the turn,
the backtest, the decision, the report - is `pipelines.loop`'s, unchanged."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from models.handle import ModelHandle, file_sha256
from models.registry import ModelRegistry
from pipelines.exceptions import ConfigError
from pipelines.kafka.topic_reader import read_records
from pipelines.loop.dataset_file import dataset_metadata, write_dataset
from pipelines.loop.labels import DatasetReport, known_labels
from pipelines.loop.spec import Candidate, DatasetSources, Holdout, LoopSpec
from tests.toy_pipeline import model as counter_model

LABEL_DELAY_MS = 60_000


def regular_labels(events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    """One label per event, a minute after it: 1 when its user's count reached `REGULAR_FROM` with it."""
    counts: dict[str, int] = {}
    labels = []
    for event in events:
        user = str(event["user"])
        counts[user] = counts.get(user, 0) + 1
        labels.append({"event_id": event["event_id"], "label": int(counts[user] >= counter_model.REGULAR_FROM),
                       "labelled_at": int(str(event["ts"])) + LABEL_DELAY_MS, "source": "regular"})
    return labels


class _Result(msgspec.Struct):
    event_id: str
    user: str
    count: int
    ts: int
    score: float
    model: str


def build(sources: DatasetSources, out: Path) -> DatasetReport:
    """The labelled results up to `until`, by (ts, event_id): `count`, `score`, `label` (and ids, times)."""
    report = DatasetReport(path=str(out))
    labels = known_labels(sources.bootstrap, sources.feedback_topic, sources.until_ms, sources.dlq_topic, report,
                          "counter")
    results: dict[str, _Result] = {}
    for record in read_records(sources.bootstrap, sources.results_topic):
        result = msgspec.json.decode(record.value, type=_Result)
        if result.ts <= sources.until_ms:
            results.setdefault(result.event_id, result)
    report.results = len(results)
    rows = sorted((r for r in results.values() if r.event_id in labels), key=lambda r: (r.ts, r.event_id))
    report.unlabelled_results = len(results) - len(rows)
    report.unknown_labels = sum(1 for event_id in labels if event_id not in results)
    report.rows, report.positives = len(rows), sum(labels[r.event_id].label for r in rows)
    report.first_ts, report.last_ts = (rows[0].ts, rows[-1].ts) if rows else (None, None)
    columns = {"event_id": [r.event_id for r in rows], "user": [r.user for r in rows], "ts": [r.ts for r in rows],
               "count": [r.count for r in rows], "score": [r.score for r in rows], "model": [r.model for r in rows],
               "label": [labels[r.event_id].label for r in rows]}
    write_dataset(out, columns, "counter", {"results_topic": sources.results_topic,
                                            "feedback_topic": sources.feedback_topic, "until_ms": sources.until_ms},
                  report)
    return report


@dataclass(frozen=True)
class Splits:
    """A counter dataset in time order and where its holdout starts."""

    event_ids: list[str]
    ts: np.ndarray
    counts: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    holdout_from: int
    metadata: dict[str, Any]


def load(path: Path, holdout_share: float) -> Splits:
    """Read a counter dataset and split it by time; `ConfigError` when a side is empty."""
    import pyarrow.parquet as pq

    metadata = dataset_metadata(path, "counter")
    table = pq.read_table(path).to_pydict()
    order = sorted(range(len(table["ts"])), key=lambda i: (table["ts"][i], table["event_id"][i]))
    holdout_from = len(order) - int(len(order) * holdout_share)
    if not 0 < holdout_from < len(order):
        raise ConfigError(f"{path} has {len(order)} rows: too few to hold {holdout_share} out")
    column = {name: [table[name][i] for i in order] for name in ("event_id", "ts", "count", "score", "label")}
    return Splits(column["event_id"], np.array(column["ts"]), np.array(column["count"], dtype=np.float32),
                  np.array(column["score"]), np.array(column["label"]), holdout_from, metadata)


class CounterHoldout(Holdout):
    """The newest rows of a counter dataset."""

    def __init__(self, splits: Splits) -> None:
        self.splits = splits
        self.part = slice(splits.holdout_from, len(splits.event_ids))

    def evaluate(self, handle: ModelHandle) -> dict[str, Any]:
        probability = handle.run({"count": self.splits.counts[self.part].reshape(-1, 1)})["probability"]
        return counter_model.accuracy(self.splits.labels[self.part], probability.reshape(-1))

    def served(self) -> dict[str, Any]:
        return counter_model.accuracy(self.splits.labels[self.part], self.splits.scores[self.part])

    def streamed(self, results: dict[str, dict[str, Any]], topic: str) -> dict[str, Any]:
        ids = self.splits.event_ids[self.part]
        missing = [e for e in ids if e not in results]
        if missing:
            raise ConfigError(f"{len(missing)} holdout events have no result on {topic!r} (e.g. {missing[0]!r})")
        return counter_model.accuracy(self.splits.labels[self.part], np.array([results[e]["score"] for e in ids]))

    def describe(self, candidate: Candidate) -> dict[str, Any]:
        return {"rows": self.part.stop - self.part.start, "from_ts": int(self.splits.ts[self.part.start]),
                "to_ts": int(self.splits.ts[-1]), "trained_to_ts": candidate.manifest["dataset"]["trained_to_ts"]}

    @property
    def size_text(self) -> str:
        return f"{self.part.stop - self.part.start:,} rows"


class CounterLoop(LoopSpec):
    """Regulars as labels, the results' counts as rows, accuracy to promote."""

    metrics = ("accuracy",)

    def synthetic_labels(self, events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
        return regular_labels(events, seed)

    def build_dataset(self, sources: DatasetSources, out: Path) -> DatasetReport:
        return build(sources, out)

    def train(self, dataset: Path, registry: ModelRegistry, *, seed: int, holdout_share: float,
              from_scratch: bool) -> Candidate:
        splits = load(dataset, holdout_share)
        trained = slice(0, splits.holdout_from)
        threshold = counter_model.fit_threshold(splits.counts[trained], splits.labels[trained])
        holdout = CounterHoldout(splits)
        with tempfile.TemporaryDirectory() as tmp:
            onnx = counter_model.export(Path(tmp) / "counter.onnx", threshold)
            metrics = holdout.evaluate(ModelHandle(onnx, {"name": "counter", "version": 0,
                                                          "sha256": file_sha256(onnx)}))
        fields = {"metrics": metrics, "metrics_holdout": {"rows": holdout.part.stop - holdout.part.start,
                                                          "production": holdout.served()},
                  "fine_tuned_from": registry.load("counter").ref,
                  "dataset": {"path": str(dataset.resolve()), "sha256": file_sha256(dataset),
                              "until_ms": splits.metadata.get("until_ms"), "rows": len(splits.event_ids),
                              "trained_to_ts": int(splits.ts[splits.holdout_from - 1]),
                              "holdout_share": holdout_share}}
        version = counter_model.register(registry, threshold, fields, promote=False)
        return Candidate(version, registry.manifest("counter", version))

    def holdout(self, dataset: Path, holdout_share: float) -> Holdout:
        return CounterHoldout(load(dataset, holdout_share))
