"""Idempotency by event time: a re-sent event (same event_id and ts) is applied once while it is within the key's
window, whatever the key's traffic (a hot key with thousands of events in the window included); a re-send
outside the window is applied as a new event; memory per key stays bounded by one window of ids."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.harness import OperatorHarness
from operators.idempotency import IdempotencyWindow, SeenEventIds
from operators.reco.decoding import click_decoder
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator, SessionState
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator, RiskState
from operators.risk.schemas import Transaction
from state import MemoryVersionedStore

HOUR = 3_600_000
T0 = 1_767_225_600_000


def _tx(i: int, ts: int, account: str = "acct-hot") -> dict[str, Any]:
    return {"event_id": f"tx-{i}", "account_id": account, "amount": 10.0 + i % 50, "currency": "EUR",
            "merchant_id": f"m-{i % 40}", "country": "DE", "device_id": "d-1", "ts": ts}


def _risk(window_ms: int = 24 * HOUR) -> OperatorHarness[Any, Any]:
    return OperatorHarness(lambda: RiskOperator(dedup_window_ms=window_ms), transaction_decoder(),
                           lambda t: t.account_id, RISK_STATE_CODEC, topic="tx")


def test_retried_events_are_dropped_and_counted() -> None:
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    events = [msgspec.convert(e, type=Transaction, strict=False) for e in generate_transactions(400, seed=5)]
    retried = 0
    results = []
    for i, event in enumerate(events):
        results += list(operator.process(event, store.key(event.account_id), None))
        if i % 7 == 0:  # the producer retries this one immediately
            assert list(operator.process(event, store.key(event.account_id), None)) == []
            retried += 1
        if i % 11 == 0 and i >= 20:  # ... or a little later
            earlier = events[i - 20]
            before = store.key(earlier.account_id).get()
            assert list(operator.process(earlier, store.key(earlier.account_id), None)) == []
            assert store.key(earlier.account_id).get() == before
            retried += 1
    assert len(results) == len(events)
    assert operator.duplicates == retried
    by_account: dict[str, int] = {}
    for event in events:
        by_account[event.account_id] = by_account.get(event.account_id, 0) + 1
    for account, count in by_account.items():
        latest = store.key(account).get()
        assert latest is not None and latest.version == count


def test_a_hot_key_recognises_a_resend_among_thousands_of_events_inside_the_window() -> None:
    harness = _risk()
    events = [_tx(i, T0 + i * 10_000) for i in range(3_000)]  # 3,000 events in 8.3 hours
    harness.send(*events)
    harness.send(events[0], events[1_500], events[2_998])  # re-sent long after (not among the last 32)
    harness.run()
    harness.checkpoint()
    assert len(harness.committed) == 3_000 and harness.operator is not None
    assert harness.operator.duplicates == 3
    latest = harness.store.key("acct-hot").get()
    assert latest is not None and latest.version == 3_000
    state: RiskState = latest.value
    assert len(state.seen_ids) == 3_000
    assert len(RISK_STATE_CODEC.encode(state)) < 3_000 * 8 + 4_000  # 8 bytes per remembered id, plus the rest


@pytest.mark.parametrize(("age_ms", "applied"), [(HOUR - 1, False), (HOUR, False), (HOUR + 1, True)])
def test_a_resend_just_inside_the_window_is_dropped_and_just_outside_is_applied(age_ms: int, applied: bool) -> None:
    harness = _risk(window_ms=HOUR)
    original = _tx(0, T0)
    harness.send(original, _tx(1, T0 + age_ms), original)  # the key's newest event time is now T0 + age
    harness.run()
    harness.checkpoint()
    ids = [r.event_id for r in harness.committed]
    assert ids == (["tx-0", "tx-1", "tx-0"] if applied else ["tx-0", "tx-1"])
    latest = harness.store.key("acct-hot").get()
    assert latest is not None and latest.version == (3 if applied else 2)


def test_memory_stays_bounded_by_one_window_of_ids() -> None:
    window = IdempotencyWindow(HOUR)
    seen = SeenEventIds()
    for i in range(6_000):  # one event a second for 100 minutes
        seen = window.remember(seen, f"e-{i}", T0 + i * 1_000)
    kept = len(seen)
    assert 3_600 <= kept <= 3_600 + 150 + 1  # the last hour, plus at most one bucket (2.5 min) not yet dropped
    assert window.seen(seen, "e-5999", T0 + 5_999_000) and window.seen(seen, "e-2399", T0 + 2_399_000)  # age 1 h
    assert not window.seen(seen, "e-2398", T0 + 2_398_000)  # 1 h 1 s older than the newest: outside


def test_remember_leaves_the_earlier_state_version_unchanged() -> None:
    window = IdempotencyWindow(HOUR)
    first = window.remember(SeenEventIds(), "a", T0)
    encoded = msgspec.msgpack.encode(first)
    second = window.remember(first, "b", T0 + 1)
    assert msgspec.msgpack.encode(first) == encoded and len(second) == 2


def test_late_events_land_in_their_own_bucket_and_are_recognised() -> None:
    window = IdempotencyWindow(HOUR)
    seen = SeenEventIds()
    order = [0, 50, 10, 55, 5, 30, 59, 1]  # minutes after T0, out of order
    for minute in order:
        seen = window.remember(seen, f"e-{minute}", T0 + minute * 60_000)
    assert seen.starts == sorted(seen.starts) and seen.ends[-1] == len(seen.blob) == 8 * len(order)
    for minute in order:
        assert window.seen(seen, f"e-{minute}", T0 + minute * 60_000)
    assert not window.seen(seen, "e-other", T0 + 30 * 60_000)
    later = window.remember(seen, "e-121", T0 + 121 * 60_000)  # drops the buckets older than 1 h before 2:01
    assert not window.seen(later, "e-59", T0 + 59 * 60_000) and window.seen(later, "e-121", T0 + 121 * 60_000)
    assert len(later) == 1


def test_a_state_written_before_the_window_keeps_recognising_its_last_ids() -> None:
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    legacy = RiskState(recent_event_ids=[f"old-{i}" for i in range(32)], last_event_id="old-31")
    legacy.features.last_ts = T0
    store.key("acct-hot").put(legacy, event_time=T0)
    event = lambda i, eid: msgspec.convert({**_tx(i, T0 + i), "event_id": eid}, type=Transaction)  # noqa: E731
    assert operator.process(event(1, "old-3"), store.key("acct-hot"), None) == []
    assert len(operator.process(event(2, "new-1"), store.key("acct-hot"), None)) == 1
    assert operator.process(event(3, "old-7"), store.key("acct-hot"), None) == []  # folded into the window
    latest = store.key("acct-hot").get()
    assert latest is not None and latest.value.recent_event_ids == [] and len(latest.value.seen_ids) == 33


def test_a_hot_session_recognises_old_resends_too() -> None:
    harness = OperatorHarness(lambda: RecoOperator(dedup_window_ms=HOUR), click_decoder(), lambda c: c.session_id,
                              RECO_STATE_CODEC, topic="clicks")
    clicks = [{"event_id": f"c-{i}", "user_id": "u", "session_id": "s-hot", "item_id": i % 90,
               "action": "view", "ts": T0 + i * 500} for i in range(500)]
    harness.send(*clicks)
    harness.send(clicks[3], clicks[250])
    harness.run()
    harness.checkpoint()
    assert len(harness.committed) == 500 and harness.operator is not None and harness.operator.duplicates == 2
    latest = harness.store.key("s-hot").get()
    assert latest is not None
    session: SessionState = latest.value
    assert latest.version == 500 and len(session.seen_ids) == 500


def test_a_key_busier_than_max_ids_remembers_its_newest_ids() -> None:
    window = IdempotencyWindow(HOUR, max_ids=100)
    seen = SeenEventIds()
    for i in range(300):  # 300 events in 5 minutes: all inside the window
        seen = window.remember(seen, f"e-{i}", T0 + i * 1_000)
    assert len(seen) == 100 and seen.ends[-1] == len(seen.blob) and all(end > 0 for end in seen.ends)
    assert window.seen(seen, "e-299", T0 + 299_000) and window.seen(seen, "e-200", T0 + 200_000)
    assert not window.seen(seen, "e-199", T0 + 199_000)  # forgotten: the key is busier than 100 ids per window
