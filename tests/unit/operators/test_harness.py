"""Both operators through the in-process harness: crashes at random moments (abort, resume from the last
checkpoint) lose and duplicate nothing; bad records and failing operators become dead letters, the stream goes on."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from models.exceptions import ModelInputError
from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.dead_letter import DeadLetter, Reason
from operators.harness import OperatorHarness
from operators.reco.decoding import click_decoder
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.reco.schemas import Click
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import Transaction
from pipelines.kafka.publishing import synthetic_events
from state.contract import SourceCoordinates, VersionedState

MALFORMED = [b"\xff\xfe", b"{not json", b"[1, 2]", b'{"event_id": "x"}']


def _risk_harness(make: Any = RiskOperator) -> OperatorHarness[Any, Any]:
    return OperatorHarness(make, transaction_decoder(), lambda t: t.account_id, RISK_STATE_CODEC, topic="tx")


def _reco_harness() -> OperatorHarness[Any, Any]:
    return OperatorHarness(RecoOperator, click_decoder(), lambda c: c.session_id, RECO_STATE_CODEC, topic="clicks")


def _risk_records(n: int, seed: int) -> list[bytes]:
    events = [
        msgspec.json.encode({k: v for k, v in r.items() if k not in ("label", "pattern")})
        for r in generate_transactions(n, seed=seed)
    ]
    events[n // 2 : n // 2] = [events[n // 2 - 5], events[n // 2 - 40]]  # producer retries (recent ones)
    for i, bad in enumerate(MALFORMED):
        events.insert(37 * (i + 1), bad)
    return events


def _unstamped(results: list[Any]) -> list[bytes]:
    return [msgspec.json.encode(msgspec.structs.replace(r, scored_at=0)) for r in results]


def _crashing_run(harness: OperatorHarness[Any, Any], records: list[bytes], seed: int) -> None:
    """Send everything, then process in random steps with checkpoints, crashes and resumes until done."""
    rng = random.Random(seed)
    harness.send(*records)
    crashes = 0
    while harness.position < len(records) or harness.pending:
        harness.run(rng.randint(1, 120))
        roll = rng.random()
        if roll < 0.35:
            harness.checkpoint()
        elif roll < 0.55:
            harness.abort()
            crashes += 1
            harness.resume()
        if harness.position == len(records):
            harness.checkpoint()
    assert crashes >= 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_risk_crashes_lose_and_duplicate_nothing(seed: int) -> None:
    records = _risk_records(1500, seed)
    with _risk_harness() as clean:
        clean.send(*records)
        clean.run()
        clean.checkpoint()
        expected, expected_letters = clean.committed, clean.dead_letters
    with _risk_harness() as crashing:
        _crashing_run(crashing, records, seed)
        assert _unstamped(crashing.committed) == _unstamped(expected)
        assert crashing.dead_letters == expected_letters
    assert len(expected) == 1500  # the two retries are dropped, each valid event scored once
    assert Counter(r.event_id for r in expected).most_common(1)[0][1] == 1
    assert [d.reason for d in expected_letters] == ["not_utf8", "invalid_json", "not_an_object", "missing_field"]
    assert [d.offset for d in expected_letters] == [records.index(bad) for bad in MALFORMED]


def test_reco_crashes_lose_and_duplicate_nothing() -> None:
    clicks = [msgspec.json.encode(c) for c in synthetic_events("reco", 1200, 5)]
    clicks.insert(300, clicks[299])  # a retry
    with _reco_harness() as clean:
        clean.send(*clicks)
        clean.run()
        clean.checkpoint()
        expected = clean.committed
    with _reco_harness() as crashing:
        _crashing_run(crashing, clicks, 9)
        assert _unstamped(crashing.committed) == _unstamped(expected)
    assert len(expected) == 1200 and not crashing.dead_letters
    assert all(len(r.items) == 10 for r in expected)


class _FailingOn(RiskOperator):
    """A risk operator that fails on marked events: a model error, or a bug."""

    def process(
        self, event: Transaction, state: VersionedState[Any], source: SourceCoordinates | None
    ) -> Iterator[Any]:
        if event.event_id.endswith("7"):
            raise ModelInputError("the model refused the input")
        if event.event_id.endswith("3"):
            raise ZeroDivisionError("division by zero")
        return super().process(event, state, source)


def test_operator_and_model_errors_are_dead_letters_and_the_stream_goes_on() -> None:
    records = _risk_records(300, 4)[:200]
    with _risk_harness(_FailingOn) as harness:
        harness.send(*records)
        harness.run()
        assert harness.committed == []  # nothing is visible before a checkpoint commits it
        harness.checkpoint()
        letters = [d for d in harness.dead_letters if d.reason in ("model_error", "operator_error")]
        ids = [msgspec.json.decode(d.raw)["event_id"] for d in letters]
        assert {d.reason for d in letters if d.error.startswith("ModelInputError")} == {Reason.MODEL_ERROR}
        assert {d.reason for d in letters if d.error.startswith("ZeroDivisionError")} == {Reason.OPERATOR_ERROR}
        assert ids and all(i.endswith(("3", "7")) for i in ids)
        scored = {r.event_id for r in harness.committed}
        decoded = [msgspec.json.decode(r) for r in records if r not in MALFORMED]
        valid = {e["event_id"] for e in decoded if not e["event_id"].endswith(("3", "7"))}
        assert scored == valid


def test_run_after_abort_needs_resume_and_resume_starts_at_the_checkpoint() -> None:
    with _risk_harness() as harness:
        harness.send(*_risk_records(100, 6)[:60])
        harness.run(20)
        harness.checkpoint()
        harness.run(30)
        harness.abort()
        with pytest.raises(RuntimeError, match="resume"):
            harness.run()
        harness.resume()
        assert harness.position == 20 and harness.pending == []
        assert harness.run() == 40


def test_harness_passes_the_context_to_open() -> None:
    harness = OperatorHarness(
        RiskOperator, transaction_decoder(), lambda t: t.account_id, RISK_STATE_CODEC,
        context=OperatorContext(model_ref="risk@2"),
    )
    with harness:
        harness.send(*_risk_records(50, 7)[:20])
        harness.run()
        harness.checkpoint()
        assert {r.model for r in harness.committed} == {"risk@2"}
        assert all(not isinstance(r, DeadLetter) for r in harness.committed)


def test_click_decoder_and_harness_keep_sessions_apart() -> None:
    with _reco_harness() as harness:
        harness.send(*(Click(event_id=f"e{i}", user_id="u", session_id=f"s{i % 2}", item_id=i, action="view",
                             ts=1_700_000_000_000 + i) for i in range(6)))
        harness.run()
        harness.checkpoint()
        assert [r.state_version for r in harness.committed] == [1, 1, 2, 2, 3, 3]
