"""Jobs of this code resume state written by the layout of before 2026-12-06 (tests/fixtures/legacy_state, written
by the code at 5043d14): the faust runtime over the old partition store and the old JSON changelog, and the Flink
job from the old savepoint, fed the fixture's later events, give exactly the results the old code's offline
scorer gives for them (state versions continuing the old ones, a re-send recognised from the old state's ids)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from pipelines.kafka.clients import client_config, consume, ensure_topics, publish_records
from tests.integration.conftest import streamscore

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_state"
INPUT = "legacy-state.risk.in"  # the name the old state's source coordinates and savepoint refer to


def _load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def _fresh_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient(client_config(bootstrap))
    doomed = [t for t in names if t in admin.list_topics(timeout=10).topics]
    for future in (admin.delete_topics(doomed, operation_timeout=30).values() if doomed else []):
        future.result()
    deadline = time.monotonic() + 60
    while set(doomed) & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.5)
    ensure_topics(bootstrap, names)


def _publish_events(bootstrap: str) -> None:
    import msgspec

    for name in ("risk_events.jsonl", "risk_events_more.jsonl"):
        rows = _load(name)
        publish_records(bootstrap, INPUT, [(r["key"].encode(), msgspec.json.encode(r["value"])) for r in rows])


def _results(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    out = {}
    for record in consume(bootstrap, topic, timeout_s=3):
        result = json.loads(record.value)
        result.pop("scored_at")
        out[result["event_id"]] = result
    return out


#: The model the expected results were recorded with (risk@3 ships as current since generator version 2).
RECORDED_WITH = "risk@1"


def _expected_more() -> dict[str, dict[str, Any]]:
    return {r["event_id"]: r for r in _load("expected_more_results.jsonl")}


def test_faust_resumes_an_old_layout_store_and_changelog(bootstrap: str, tmp_path: Path) -> None:
    out, dlq, changelog = "legacy-it.faust.out", "legacy-it.faust.dlq", "legacy-it.faust.changelog"
    _fresh_topics(bootstrap, [INPUT, out, dlq, changelog])
    _publish_events(bootstrap)
    producer = Producer({**client_config(bootstrap), "transactional.id": "legacy-it-changelog"})
    producer.init_transactions(10)
    producer.begin_transaction()  # one transaction: the topic ends at 301, the old store's changelog-next
    for row in _load("faust_changelog.jsonl"):
        producer.produce(changelog, row["value"].encode(), row["key"].encode())
    producer.commit_transaction(10)
    shutil.copytree(FIXTURES / "faust_store", tmp_path / "state" / f"{INPUT}-0")
    streamscore("--bootstrap", bootstrap, "run", "risk", "--runtime", "faust", "--bounded", "--input-topic", INPUT,
                "--output-topic", out, "--dlq-topic", dlq, "--state-dir", str(tmp_path / "state"),
                "--state-changelog", changelog, "--model", RECORDED_WITH, timeout=300)
    assert _results(bootstrap, out) == _expected_more()
    assert list(consume(bootstrap, dlq, timeout_s=1)) == []


def test_flink_restores_an_old_layout_savepoint(bootstrap: str, tmp_path: Path) -> None:
    out, dlq, changelog = "legacy-it.flink.out", "legacy-it.flink.dlq", "legacy-it.flink.changelog"
    _fresh_topics(bootstrap, [INPUT, out, dlq, changelog])
    _publish_events(bootstrap)
    savepoint = tmp_path / "savepoint"
    shutil.copytree(FIXTURES / "flink_savepoint", savepoint)
    streamscore("--bootstrap", bootstrap, "replay", "risk", "--from-savepoint", str(savepoint), "--bounded",
                "--input-topic", INPUT, "--output-topic", out, "--dlq-topic", dlq, "--state-changelog", changelog,
                "--checkpoint-dir", str(tmp_path / "checkpoints"), "--model", RECORDED_WITH, timeout=600)
    assert _results(bootstrap, out) == _expected_more()
