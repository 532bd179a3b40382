"""The recommender's feedback loop on the real broker and a real Flink job: `publish feedback reco` (confirmed
orders after clicks), `dataset build reco` (clicks + what production served + purchases known by `--until`),
`models train reco --dataset` (production fine-tuned with purchase weights, registered unpromoted with the
dataset named in its manifest), `models evaluate reco --dataset` on the same time-ordered holdout, and
`loop reco` (dataset -> candidate -> shadow-job backtest -> decision).

Point in time here: the production side of every metric is what the job served (the results' `items`), which
the test shows equals re-running production's model over the same sessions; labels known after `--until` are
not in the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from models.registry import ModelRegistry
from models.synthetic import generate_clicks
from operators.dead_letter import DeadLetter
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.loop.dataset_file import dataset_metadata
from pipelines.loop.feedback import synthetic_labels
from pipelines.reco.retraining import evaluate_reco_on_dataset, load_reco_splits, production_reco_metrics

from .conftest import Topics, streamscore

pytestmark = pytest.mark.integration

EVENTS, SEED = 6_000, 11


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.mark.slow  # a reco job, a dataset and a training run (~70 s): `make test-slow` with the closed-loop tests
def test_reco_dataset_train_and_evaluate_on_what_production_served(
    bootstrap: str, topics: Topics, tmp_path: Path, private_registry: Path
) -> None:
    registry = private_registry
    feedback, dlq = topics.input + ".feedback", topics.dlq + ".feedback"
    ensure_topics(bootstrap, [feedback])
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", str(EVENTS), "--seed", str(SEED),
                "--topic", topics.input)
    streamscore("--bootstrap", bootstrap, "run", "reco", "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq, "--checkpoint-dir",
                str(tmp_path / "checkpoints"))
    streamscore("--bootstrap", bootstrap, "publish", "feedback", "reco", "--events", str(EVENTS), "--seed",
                str(SEED), "--topic", feedback)
    publish_records(bootstrap, feedback, [(None, b'{"event_id": "c", "label": 1, "labelled_at": "soon"}')])
    labels = synthetic_labels("reco", EVENTS, SEED)
    last_known = max(int(label["labelled_at"]) for label in labels)

    out = tmp_path / "reco.parquet"
    streamscore("--bootstrap", bootstrap, "dataset", "build", "reco", "--events", topics.input, "--results",
                topics.output, "--feedback", feedback, "--until", _iso(last_known), "--out", str(out), "--dlq", dlq)
    table = pq.read_table(out).to_pydict()
    report = dataset_metadata(out)["report"]
    assert report["rows"] == EVENTS == len(table["event_id"]) and report["malformed_labels"] == 1
    assert report["late_labels"] == report["unlabelled_results"] == report["missing_events"] == 0
    [letter] = [msgspec.json.decode(r.value, type=DeadLetter) for r in consume(bootstrap, dlq, timeout_s=3)]
    assert letter.reason == "wrong_type" and letter.pipeline == "reco-feedback"
    events = {str(e["event_id"]): e for e in generate_clicks(EVENTS, SEED)}
    assert all(events[e]["item_id"] == item and events[e]["action"] == action
               for e, item, action in zip(table["event_id"], table["item_id"], table["action"], strict=True))
    truth = {str(label["event_id"]): int(label["label"]) for label in labels}
    assert dict(zip(table["event_id"], table["label"], strict=True)) == truth
    assert report["positives"] == sum(truth.values()) > 0 and table["ts"] == sorted(table["ts"])

    # production's side is what it served, and that is exactly its model re-run over the same sessions
    splits = load_reco_splits(out)
    served = production_reco_metrics(splits)
    assert served == evaluate_reco_on_dataset(ModelRegistry(registry).load("reco"), splits)
    assert served["positions"] > 500 and served["purchase_positions"] > 0

    shown = streamscore("models", "train", "reco", "--dataset", str(out), "--seed", "3").stdout
    assert "registered reco@3" in shown and "not promoted" in shown  # reco@2 is the shipped current one
    manifest = ModelRegistry(registry).manifest("reco", 3)
    assert ModelRegistry(registry).current("reco") == 2
    dataset = manifest["dataset"]
    assert dataset["path"] == str(out.resolve()) and dataset["until_ms"] == last_known
    assert (dataset["events_topic"], dataset["results_topic"], dataset["feedback_topic"]) == (
        topics.input, topics.output, feedback)
    assert dataset["from_ts"] == table["ts"][0] and dataset["to_ts"] == table["ts"][-1]
    assert dataset["trained_to_ts"] < manifest["metrics_holdout"]["from_ts"] == splits.cutoff_ts
    assert dataset["purchases"] == report["positives"] and manifest["purchase_weight"] > 1
    assert manifest["fine_tuned_from"] == "reco@2"  # production, fine-tuned: it keeps what it knew
    assert manifest["metrics"]["hr_at_10"] >= served["hr_at_10"] - 0.03, (manifest["metrics"], served)
    assert manifest["metrics_holdout"]["production"] == served
    assert manifest["metrics"]["positions"] == served["positions"]
    evaluated = json.loads(streamscore("models", "evaluate", "reco", "--version", "3", "--dataset", str(out),
                                       "--json").stdout)
    assert evaluated["model"] == manifest["metrics"] and evaluated["production"] == served

    # the loop in one command: the shadow job recommends exactly what the candidate's replay does, production's
    # topic gives what the dataset says it served; a margin it cannot reach keeps production, saying why
    loop_dir = tmp_path / "loop"
    streamscore("--bootstrap", bootstrap, "loop", "reco", "--input-topic", topics.input, "--output-topic",
                topics.output, "--dlq-topic", topics.dlq, "--feedback", feedback, "--until", _iso(last_known),
                "--metric", "purchase_hr_at_10", "--margin", "0.9", "--report-dir", str(loop_dir))
    loop = json.loads((loop_dir / "loop.json").read_text())
    assert loop["candidate"] == "reco@4" and loop["production"] == "reco@2" and loop["promoted"] is False
    assert "below the margin 0.9: reco@2 stays current" in loop["why"] and ModelRegistry(registry).current("reco") == 2
    assert loop["backtest"]["candidate"] == loop["offline"]["candidate"]
    assert loop["backtest"]["production"] == loop["offline"]["production"] == loop["offline"]["served"] == served
    assert loop["gain"] == round(loop["backtest"]["candidate"]["purchase_hr_at_10"] - served["purchase_hr_at_10"], 5)
    assert (loop_dir / "loop.png").exists() and loop["dataset"]["rows"] == EVENTS

    # labels known after an earlier --until stay out: those rows have no label yet
    until = sorted(int(label["labelled_at"]) for label in labels)[EVENTS // 2]
    early = tmp_path / "early.parquet"
    streamscore("--bootstrap", bootstrap, "dataset", "build", "reco", "--events", topics.input, "--results",
                topics.output, "--feedback", feedback, "--until", _iso(until), "--out", str(early), "--dlq", dlq)
    part = pq.read_table(early).to_pydict()
    meta = dataset_metadata(early)["report"]
    assert meta["late_labels"] > 0 and max(part["ts"]) <= until
    known = [at for at in part["labelled_at"] if at is not None]
    assert known and max(known) <= until and meta["unlabelled_results"] == part["label"].count(None) > 0
