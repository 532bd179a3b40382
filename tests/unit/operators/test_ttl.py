"""State TTL in event time (`state.ttl_hours`): a key idle for longer than the TTL restarts cold, exactly as a new
key would (its state forgotten, its versions start again at 1: what a sweep leaves), in the one-at-a-time path
and in micro-batches alike."""

from __future__ import annotations

from typing import Any

import msgspec

from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.reco.schemas import Click
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import Transaction
from state import MemoryVersionedStore

HOUR = 3_600_000
T0 = 1_767_225_600_000


def _tx(i: int, ts: int, account: str = "acct-1") -> Transaction:
    return msgspec.convert({"event_id": f"tx-{i}", "account_id": account, "amount": 20.0 + i, "currency": "EUR",
                            "merchant_id": f"m-{i}", "country": "DE", "device_id": "d-1", "ts": ts}, type=Transaction)


def _risk(ttl_ms: int | None) -> RiskOperator:
    operator = RiskOperator(ttl_ms=ttl_ms)
    operator.open(OperatorContext())
    return operator


def _unversioned(result: Any) -> Any:
    return msgspec.structs.replace(result, state_version=0, event_id="", account_id="", scored_at=0)


def test_an_idle_key_past_the_ttl_restarts_cold_as_a_new_key_would() -> None:
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    operator = _risk(ttl_ms=HOUR)
    for i in range(5):
        operator.process(_tx(i, T0 + i * 60_000), store.key("acct-1"), None)
    late = _tx(9, T0 + 4 * 60_000 + HOUR + 1)  # 1 h 1 ms after the account's newest event
    [result] = operator.process(late, store.key("acct-1"), None)
    assert operator.expired_keys == 1 and result.state_version == 1  # a new lifetime
    [as_new] = _risk(ttl_ms=HOUR).process(late, MemoryVersionedStore(codec=RISK_STATE_CODEC).key("x"), None)
    assert _unversioned(result) == _unversioned(as_new)
    assert [v.version for v in store.key("acct-1").history(10)] == [1]  # nothing of the old lifetime is kept
    [kept] = _risk(ttl_ms=None).process(late, _store_with_history(), None)
    assert _unversioned(kept) != _unversioned(as_new)  # without a TTL the history counts


def _store_with_history() -> Any:
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    operator = _risk(ttl_ms=None)
    for i in range(5):
        operator.process(_tx(i, T0 + i * 60_000), store.key("acct-1"), None)
    return store.key("acct-1")


def test_exactly_the_ttl_is_not_expired() -> None:
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    operator = _risk(ttl_ms=HOUR)
    operator.process(_tx(0, T0), store.key("acct-1"), None)
    operator.process(_tx(1, T0 + HOUR), store.key("acct-1"), None)
    assert operator.expired_keys == 0
    latest = store.key("acct-1").get()
    assert latest is not None and latest.value.features.count == 2


def _stream() -> list[Transaction]:
    """Three accounts with gaps of 30 min to 3 h between their events (some past a 1 h TTL)."""
    events, clock = [], [T0, T0, T0]
    for i in range(120):
        account = i % 3
        clock[account] += [30, 90, 180, 45][(i // 3 + account) % 4] * 60_000
        events.append(_tx(i, clock[account], account=f"acct-{account}"))
    return events


def test_micro_batches_expire_exactly_as_one_event_at_a_time() -> None:
    events = _stream()
    one = _risk(ttl_ms=HOUR)
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    expected = [one.process(e, store.key(e.account_id), None) for e in events]
    assert one.expired_keys > 0
    batched = _risk(ttl_ms=HOUR)
    other = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    got: list[Any] = []
    for start in range(0, len(events), 7):
        chunk = [BatchItem(e.account_id, e, other.key(e.account_id), None) for e in events[start:start + 7]]
        got.extend(apply_operator_batch(batched, chunk))
    unstamped = lambda outcomes: [[msgspec.structs.replace(r, scored_at=0) for r in o] for o in outcomes]  # noqa: E731
    assert unstamped(got) == unstamped(expected) and batched.expired_keys == one.expired_keys


def test_a_session_past_the_ttl_forgets_its_seen_items_and_ids() -> None:
    operator = RecoOperator(ttl_ms=2 * HOUR, idle_timeout_ms=HOUR)
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RECO_STATE_CODEC)
    click = lambda i, ts: msgspec.convert({"event_id": f"c-{i}", "user_id": "u", "session_id": "s", "item_id": i,  # noqa: E731
                                           "action": "view", "ts": ts}, type=Click)
    operator.process(click(1, T0), store.key("s"), None)
    operator.process(click(2, T0 + 90 * 60_000), store.key("s"), None)  # idle > 1 h: a fresh session, ids kept
    assert operator.process(click(1, T0), store.key("s"), None) == []  # still a retry within the window
    operator.process(click(3, T0 + 90 * 60_000 + 2 * HOUR + 1), store.key("s"), None)  # past the TTL: cold
    latest = store.key("s").get()
    assert operator.expired_keys == 1 and latest is not None
    assert latest.version == 1 and latest.value.seen == [3]
    assert operator.idempotency.count(operator.idempotency.load(store.key("s"))) == 1  # the old ids forgotten
