"""A producer retry (same event_id, same key) is applied once: no second state version, no second result."""

from __future__ import annotations

import msgspec

from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.risk.operator import RECENT_EVENT_IDS, RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import Transaction
from state import MemoryVersionedStore


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
        if i % 11 == 0 and i >= 20:  # ... or a little later (still among the account's recent ids)
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
        assert len(latest.value.recent_event_ids) == min(count, RECENT_EVENT_IDS)
