"""End to end on the real broker and a real PyFlink job: publish -> `run risk --bounded` -> read_committed."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest

from operators.contract import OperatorContext
from operators.dead_letter import DeadLetter
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import RiskResult, Transaction
from pipelines.kafka.clients import consume
from pipelines.kafka.publishing import synthetic_events
from state import MemoryVersionedStore

from .conftest import Topics, run_bounded, streamscore

pytestmark = pytest.mark.integration

VALID = b'{"event_id":"ok-1","account_id":"acct-x","amount":12.5,"currency":"EUR","merchant_id":"m-1",' \
    b'"country":"DE","device_id":"d-1","ts":1767225600000}'

# (raw line, expected reason) - every line must become exactly one dead letter with that reason.
MALFORMED: list[tuple[bytes, str]] = [
    (b"\xff\xfe not utf-8", "not_utf8"),
    (b'{"event_id": "e1", "account_id": ', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (VALID.replace(b'"amount":12.5,', b""), "missing_field"),
    (VALID.replace(b"12.5", b'"12.5"'), "wrong_type"),
    (VALID.replace(b"12.5", b"1e999"), "non_finite_number"),
    (VALID.replace(b"12.5", b"-3"), "non_positive_amount"),
    (VALID.replace(b'"EUR"', b'"euro"'), "bad_currency"),
    (VALID.replace(b'"DE"', b'"Germany"'), "bad_country"),
    (VALID.replace(b'"acct-x"', b'""'), "bad_id"),
    (VALID.replace(b"1767225600000", b"1767225600"), "absurd_ts"),
    (b'{"pad":"' + b"x" * 70_000 + b'"}', "oversized_message"),
]


def _publish(bootstrap: str, topics: Topics, tmp_path: Path, events: int, seed: int) -> None:
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--events", str(events), "--seed", str(seed),
                "--topic", topics.input)
    retries = tmp_path / "retries.jsonl"  # producer retries of the newest events: applied once, scored once
    retries.write_bytes(b"\n".join(msgspec.json.encode(e) for e in synthetic_events("risk", events, seed)[-10:]))
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--file", str(retries), "--topic", topics.input)
    corpus = tmp_path / "malformed.jsonl"
    corpus.write_bytes(b"\n".join(raw for raw, _ in MALFORMED) + b"\n")
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--file", str(corpus), "--topic", topics.input)


def _offline_results(events: list[dict[str, object]]) -> list[RiskResult]:
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    results: list[RiskResult] = []
    for event in events:
        tx = msgspec.json.decode(msgspec.json.encode(event), type=Transaction)
        results.extend(operator.process(tx, store.key(tx.account_id), None))
    return results


def test_risk_job_scores_every_valid_event_once_and_dead_letters_the_rest(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 600, 3)
    _publish(bootstrap, topics, tmp_path, events=600, seed=3)

    run_bounded(bootstrap, topics, tmp_path / "checkpoints")

    results = [msgspec.json.decode(r.value, type=RiskResult)
               for r in consume(bootstrap, topics.output, timeout_s=5)]
    counts = Counter(r.event_id for r in results)
    assert set(counts) == {str(e["event_id"]) for e in events}
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]

    # Per account, results carry state versions 1, 2, 3, ... in event order.
    versions: dict[str, list[int]] = defaultdict(list)
    for result in results:
        versions[result.account_id].append(result.state_version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())

    # The streaming job computes exactly what the same operator computes offline (scored_at aside),
    # in process and through `streamscore score --file`.
    offline = {r.event_id: r for r in _offline_results(events)}
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join([msgspec.json.encode(e) for e in events] + [raw for raw, _ in MALFORMED]))
    scored_file, letters_file = tmp_path / "scored.jsonl", tmp_path / "letters.jsonl"
    streamscore("score", "risk", "--file", str(events_file), "--out", str(scored_file),
                "--dead-letters", str(letters_file))
    scored = {r.event_id: r for r in (msgspec.json.decode(line, type=RiskResult)
                                      for line in scored_file.read_bytes().splitlines())}
    assert scored.keys() == offline.keys()
    assert sorted(msgspec.json.decode(line)["reason"] for line in letters_file.read_bytes().splitlines()) == sorted(
        reason for _, reason in MALFORMED
    )
    for result in results:
        for reference in (offline, scored):
            expected = msgspec.structs.replace(reference[result.event_id], scored_at=result.scored_at)
            assert msgspec.json.encode(result) == msgspec.json.encode(expected)

    letters = [msgspec.json.decode(r.value, type=DeadLetter)
               for r in consume(bootstrap, topics.dlq, timeout_s=5)]
    assert sorted(letter.reason for letter in letters) == sorted(reason for _, reason in MALFORMED)
    for letter in letters:
        assert letter.pipeline == "risk" and letter.topic == topics.input and letter.offset is not None
        assert letter.error
    counted = streamscore("--bootstrap", bootstrap, "dlq", "count", "--topic", topics.dlq, "--timeout", "3")
    assert f"{len(MALFORMED):8d}  total" in counted.stdout and "absurd_ts" in counted.stdout
    by_offset = sorted(letters, key=lambda letter: letter.offset or 0)
    assert [letter.raw for letter in by_offset] == [
        raw.decode("utf-8", errors="backslashreplace") for raw, _ in MALFORMED
    ]
