"""A risk job restored from a savepoint written by the old state layout (commit 5043d14,
`tests/fixtures/legacy_state/`) converts each key on first touch and continues exactly where the old job
stopped (`test_legacy_state_resume.py` checks the results alone, for both runtimes).

The job, fed the fixture's later events, gives the results of the offline scorer fed every event (the same scores,
decisions and `state_version`s: versions continue from the old ones; a retry of an event the old state saw is
recognised through the idempotency ids held in the old state), and its state changelog (binary, appended to the
old job's JSON changelog) syncs into a store that `state get` reads.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka.admin import AdminClient

from pipelines.kafka.changelog_format import SIDE_FORMAT, VERSION_FORMAT
from pipelines.kafka.clients import client_config, consume, ensure_topics, publish_records

from .conftest import Topics, streamscore

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_state"
#: The input topic the fixture's state names in its source coordinates (one partition).
TOPIC = "legacy-state.risk.in"
#: The model the fixture's results were recorded with (risk@3 ships as current since generator version 2).
RECORDED_WITH = "risk@1"


def _lines(name: str) -> list[Any]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line]


def _recreate(bootstrap: str, topic: str) -> None:
    """`topic` empty with one partition (offsets then line up with the savepoint's source split)."""
    admin = AdminClient(client_config(bootstrap))
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result()
        deadline = time.monotonic() + 30
        while topic in admin.list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, f"topic {topic} was not deleted"
            time.sleep(0.5)
    ensure_topics(bootstrap, [topic])


def _without_scored_at(values: list[bytes]) -> list[dict[str, Any]]:
    results = [msgspec.json.decode(value) for value in values]
    for result in results:
        result.pop("scored_at", None)
    return results


@pytest.mark.slow  # a layout-1 savepoint restored and run on (~46 s): `make test-slow`; test_legacy_state_resume stays
def test_a_job_restored_from_an_old_layout_savepoint_continues_exactly(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    first, more = _lines("risk_events.jsonl"), _lines("risk_events_more.jsonl")
    _recreate(bootstrap, TOPIC)
    publish_records(bootstrap, TOPIC, [(r["key"].encode(), msgspec.json.encode(r["value"])) for r in first + more])
    # the old job's changelog first (JSON), so that the restored job's binary records continue it
    changelog = topics.output + ".changelog"
    ensure_topics(bootstrap, [changelog])
    publish_records(bootstrap, changelog,
                    [(r["key"].encode(), r["value"].encode()) for r in _lines("flink_changelog.jsonl")])
    savepoint = tmp_path / "savepoint"
    shutil.copytree(FIXTURES / "flink_savepoint", savepoint)

    streamscore("--bootstrap", bootstrap, "replay", "risk", "--from-savepoint", str(savepoint), "--bounded",
                "--input-topic", TOPIC, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--state-changelog", changelog, "--checkpoint-dir", str(tmp_path / "checkpoints"),
                "--model", RECORDED_WITH)

    results = _without_scored_at([r.value for r in consume(bootstrap, topics.output, timeout_s=5)])
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(msgspec.json.encode(r["value"]) + b"\n" for r in first + more))
    offline = tmp_path / "offline.jsonl"
    streamscore("score", "risk", "--file", str(events), "--out", str(offline), "--model", RECORDED_WITH)
    want = _without_scored_at(offline.read_bytes().splitlines())
    assert len(want) == 400  # 403 records, three of them retries
    assert results == want[300:]
    assert results == _without_scored_at([json.dumps(r).encode() for r in _lines("expected_more_results.jsonl")])
    assert not list(consume(bootstrap, topics.dlq, timeout_s=2))
    # versions continue from the savepoint's (acct-000001 had 28)
    assert min(r["state_version"] for r in results if r["account_id"] == "acct-000001") == 29

    records = list(consume(bootstrap, changelog, timeout_s=5))
    new = records[300:]  # the new job writes binary: a version and the changed ids side entry per event
    assert len([r for r in new if r.value[0] == VERSION_FORMAT]) == 100
    assert all(record.value[0] in (VERSION_FORMAT, SIDE_FORMAT) for record in new)
    state_dir = tmp_path / "state"
    synced = streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", changelog,
                         "--state-dir", str(state_dir))
    assert "400 versions applied" in synced.stdout
    last = {r["account_id"]: r for r in results}
    for account in json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))["accounts"]:
        key = account["key"]
        latest = json.loads(streamscore("state", "get", "risk", key, "--state-dir", str(state_dir)).stdout)
        newest = last[key]["state_version"] if key in last else account["latest"]
        assert latest["version"] == newest
        if key in last:
            assert latest["value"]["last_event_id"] == last[key]["event_id"]
        for answer in account["answers"]:  # what the old code answered, where the version is still retained
            if answer["ask"].startswith("version") and answer["answer"]:
                (old,) = answer["answer"]
                if old["version"] > newest - 16:
                    got = streamscore("state", "get", "risk", key, *answer["args"], "--state-dir", str(state_dir))
                    assert json.loads(got.stdout) == old, (key, answer["args"])
