"""The toy pipeline's closed loop, on the real broker: `tests/toy_pipeline` declares a `LoopSpec` (its labels,
dataset, training and accuracy) and `streamscore loop counter` runs it through the same turn as risk and reco -
dataset, candidate, offline metrics, a shadow Flink job's backtest (with the whole-result diff a pipeline gets
when it declares none), the decision - with nothing under pipelines/ knowing the pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from models.registry import REGISTRY_ENV, ModelRegistry
from pipelines.kafka.clients import consume, ensure_topics
from tests.integration.conftest import Topics
from tests.toy_pipeline import generate
from tests.toy_pipeline.cli import toy_cli
from tests.toy_pipeline.loop import LABEL_DELAY_MS
from tests.toy_pipeline.model import REGULAR_FROM, registry_with_counter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS, SEED, PRODUCTION_THRESHOLD = 1000, 5, 3


def test_streamscore_loop_counter_runs_the_same_turn_and_promotes_the_better_threshold(
    bootstrap: str, topics: Topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # production serves a threshold that calls a user a regular far too early
    monkeypatch.setenv(REGISTRY_ENV, str(registry_with_counter(tmp_path / "registry", PRODUCTION_THRESHOLD)))
    feedback = topics.input + ".feedback"
    ensure_topics(bootstrap, [feedback])
    job_topics = ("--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq)
    toy_cli("--bootstrap", bootstrap, "publish", "counter", "--events", str(EVENTS), "--seed", str(SEED),
         "--topic", topics.input)
    toy_cli("--bootstrap", bootstrap, "run", "counter", "--bounded", *job_topics,
         "--checkpoint-dir", str(tmp_path / "checkpoints"))
    toy_cli("--bootstrap", bootstrap, "publish", "feedback", "counter", "--events", str(EVENTS), "--seed", str(SEED),
         "--topic", feedback)
    served = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.output, timeout_s=5)]
    assert len(served) == EVENTS and {r["model"] for r in served} == {"counter@1"}

    last_ts = max(int(str(e["ts"])) for e in generate(EVENTS, SEED))
    until = datetime.fromtimestamp((last_ts + LABEL_DELAY_MS + 1) / 1000, UTC).isoformat()
    report_dir = tmp_path / "loop"
    out = toy_cli("--bootstrap", bootstrap, "loop", "counter", "--until", until, "--feedback", feedback, *job_topics,
               "--report-dir", str(report_dir), "--fail-if-kept").stdout
    assert "dataset: 1,000 labelled results" in out and "candidate: counter@2" in out

    report = json.loads((report_dir / "loop.json").read_text())
    assert report["promoted"] and (report["candidate"], report["production"]) == ("counter@2", "counter@1")
    assert report["metric"] == "accuracy" and report["dataset"]["rows"] == EVENTS
    offline, backtest = report["offline"], report["backtest"]
    # the newest fifth is one cohort of 5 users x 40 events: below REGULAR_FROM a user is not a regular yet
    expected_production = (PRODUCTION_THRESHOLD - 1 + 40 - (REGULAR_FROM - 1)) / 40
    assert offline["production"]["accuracy"] == pytest.approx(expected_production)
    assert offline["candidate"]["accuracy"] == 1.0 and report["gain"] == pytest.approx(1 - expected_production)
    # the streaming path agrees with the offline replay, and production's replay with what it served
    assert backtest["candidate"] == offline["candidate"]
    assert backtest["production"] == offline["served"] == offline["production"]
    # the backtest compared whole results (the toy declares no diff of its own): the events whose score moved
    # changed, those both thresholds score alike (a regular long past both) did not
    diff = backtest["diff"]
    assert diff["compared"] == EVENTS and diff["missing_in_shadow"] == diff["missing_in_production"] == 0
    shadow = {r["event_id"]: r["score"] for r in (msgspec.json.decode(x.value) for x in
                                                  consume(bootstrap, backtest["shadow_topic"], timeout_s=5))}
    moved = sum(shadow[r["event_id"]] != r["score"] for r in served)
    assert diff["changed"] == moved and 0 < moved < EVENTS and diff["unchanged"] == EVENTS - moved
    registry = ModelRegistry()
    assert registry.current("counter") == 2 and registry.manifest("counter", 2)["threshold"] == REGULAR_FROM
    assert (report_dir / "loop.png").is_file() and Path(backtest["report_json"]).is_file()
