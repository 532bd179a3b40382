"""The recommendation pipeline end to end: clicks -> `run reco --bounded` -> top-k per click, exactly once."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from operators.contract import OperatorContext
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.reco.schemas import Click, RecoResult
from pipelines.kafka.clients import consume
from pipelines.kafka.publishing import synthetic_events
from state import MemoryVersionedStore

from .conftest import Topics, streamscore

pytestmark = pytest.mark.integration

VALID = b'{"event_id":"x","user_id":"u","session_id":"s","item_id":4,"action":"view","ts":1767225600000}'

# (raw line, expected reason) - every line must become exactly one dead letter with that reason.
MALFORMED: list[tuple[bytes, str]] = [
    (b"\xff\xfe not utf-8", "not_utf8"),
    (b'{"event_id": "x", "item_id": ', "invalid_json"),
    (b'"a string"', "not_an_object"),
    (VALID.replace(b'"item_id":4,', b""), "missing_field"),
    (VALID.replace(b'"item_id":4', b'"item_id":"4"'), "wrong_type"),
    (VALID.replace(b'"item_id":4', b'"item_id":-4'), "invalid_value"),
    (VALID.replace(b'"view"', b'"like"'), "invalid_value"),
    (VALID.replace(b'"session_id":"s"', b'"session_id":""'), "bad_id"),
    (VALID.replace(b'"user_id":"u"', b'"user_id":"' + b"u" * 129 + b'"'), "bad_id"),
    (VALID.replace(b"1767225600000", b"1767225600000000"), "absurd_ts"),
    (b'{"pad":"' + b"x" * 70_000 + b'"}', "oversized_message"),
]


def test_reco_job_recommends_unseen_items_once_per_click(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    clicks = synthetic_events("reco", 500, 17)
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", "500", "--seed", "17",
                "--topic", topics.input)
    retries = tmp_path / "retries.jsonl"  # producer retries of the newest clicks: applied once, answered once
    retries.write_bytes(b"\n".join(msgspec.json.encode(c) for c in clicks[-8:]))
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--file", str(retries), "--topic", topics.input)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(raw for raw, _ in MALFORMED) + b"\n")
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--file", str(bad), "--topic", topics.input)
    streamscore("--bootstrap", bootstrap, "run", "reco", "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--checkpoint-dir", str(tmp_path / "checkpoints"))

    results = [msgspec.json.decode(r.value, type=RecoResult) for r in consume(bootstrap, topics.output, timeout_s=5)]
    counts = Counter(r.event_id for r in results)
    assert set(counts) == {str(c["event_id"]) for c in clicks} and max(counts.values()) == 1

    seen: dict[str, set[int]] = defaultdict(set)
    by_id = {str(c["event_id"]): c for c in clicks}
    operator = RecoOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RECO_STATE_CODEC)
    offline = {}
    for click in clicks:
        event = msgspec.json.decode(msgspec.json.encode(click), type=Click)
        for result in operator.process(event, store.key(event.session_id), None):
            offline[result.event_id] = result
    for result in results:  # per session, in order (one partition in, keyed by session out)
        click = by_id[result.event_id]
        seen[result.session_id].add(int(click["item_id"]))  # type: ignore[call-overload]
        assert len(result.items) == 10 and not set(result.items) & seen[result.session_id]
        want = msgspec.structs.replace(offline[result.event_id], scored_at=result.scored_at)
        assert msgspec.json.encode(result) == msgspec.json.encode(want)

    letters = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.dlq, timeout_s=3)]
    assert [letter["reason"] for letter in letters] == [reason for _, reason in MALFORMED]
    assert [letter["offset"] for letter in letters] == list(range(508, 508 + len(MALFORMED)))
