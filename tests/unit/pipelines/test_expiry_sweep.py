"""Sweeping expired keys: the event clock that decides it, the faust partitions' incremental sweep over their
RocksDB store, the changelog's tombstones and new lifetimes, and that a swept key returns exactly as an
expired one would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from operators.contract import OperatorContext
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator, RiskState
from operators.risk.schemas import Transaction
from pipelines.kafka.changelog import ChangelogGapError, apply_record, changelog_record
from pipelines.runtimes.expiry import MIN_PACE_SPAN_MS, SWEEP_AFTER_TTLS, EventClock
from pipelines.runtimes.faust.partitions import PartitionState
from state import MemoryVersionedStore, RetentionPolicy
from state.rocks import RocksVersionedStore

HOUR = 3_600_000
T0 = 1_767_225_600_000


def _tx(i: int, ts: int, account: str) -> Transaction:
    return msgspec.convert({"event_id": f"tx-{i}", "account_id": account, "amount": 20.0 + i, "currency": "EUR",
                            "merchant_id": f"m-{i % 7}", "country": "DE", "device_id": "d-1", "ts": ts},
                           type=Transaction)


def test_a_key_is_due_two_ttls_after_its_newest_event_on_the_clock() -> None:
    clock = EventClock(HOUR, first_check_ms=60_000)
    assert not clock.due(T0)  # no event seen: nothing is due
    clock.saw(T0 + 2 * HOUR, now_ms=0)
    assert not clock.due(T0) and clock.due(T0 - 1)
    clock.saw(T0, now_ms=1)  # a late event does not move the clock back
    assert clock.newest == T0 + 2 * HOUR


def test_the_next_check_follows_the_clocks_pace() -> None:
    clock = EventClock(HOUR, first_check_ms=1_000)
    assert clock.next_check_ms(T0, now_ms=0) == HOUR  # no event since a restore: the TTL in processing time
    clock.saw(T0, now_ms=0)
    assert clock.next_check_ms(T0, now_ms=0) == SWEEP_AFTER_TTLS * HOUR + 1  # pace 1 (live)
    clock.saw(T0 + HOUR, now_ms=MIN_PACE_SPAN_MS)  # a backlog: an hour of events in 5 s
    pace = HOUR / MIN_PACE_SPAN_MS
    assert clock.pace(MIN_PACE_SPAN_MS) == pace
    assert clock.next_check_ms(T0, now_ms=MIN_PACE_SPAN_MS) == MIN_PACE_SPAN_MS + int(HOUR / pace) + 1
    assert clock.next_check_ms(T0 - 2 * HOUR, now_ms=MIN_PACE_SPAN_MS) == MIN_PACE_SPAN_MS + 1_000  # at least


def _partition(tmp_path: Path) -> PartitionState:
    store: RocksVersionedStore[Any] = RocksVersionedStore(tmp_path / "p0", RISK_STATE_CODEC,
                                                          retention=RetentionPolicy(max_versions=4))
    return PartitionState(0, store, 0, 0, clock=EventClock(HOUR, 1_000))


def test_the_incremental_sweep_visits_every_key_and_forgets_the_due_ones(tmp_path: Path) -> None:
    part = _partition(tmp_path)
    for i in range(10):  # keys 0-4 idle since T0, keys 5-9 active at T0 + 3 h
        part.store.put(f"k{i}", RiskState(), event_time=T0 if i < 5 else T0 + 3 * HOUR)
    assert part.store.scan_heads(None, 3) == [("k0", T0), ("k1", T0), ("k2", T0)]
    assert part.store.scan_heads("k8", 5) == [("k9", T0 + 3 * HOUR)]
    assert part.clock is not None
    part.clock.saw(T0 + 3 * HOUR, now_ms=0)
    swept: list[str] = []
    for _ in range(4):  # budget 3: 10 keys take 4 steps, then the cursor wraps
        with part.store.write_batch():
            swept += part.sweep(3)
    assert sorted(swept) == [f"k{i}" for i in range(5)]
    assert sorted(part.store.keys()) == [f"k{i}" for i in range(5, 10)]
    assert part.sweep_after is None or part.sweep_after.startswith("k")
    part.close()


def test_a_swept_key_returns_exactly_as_an_expired_one(tmp_path: Path) -> None:
    operator = RiskOperator(ttl_ms=HOUR)
    operator.open(OperatorContext())
    history = [_tx(i, T0 + i * 60_000, "idle") for i in range(5)]
    back = _tx(9, T0 + 10 * HOUR, "idle")
    expired_store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    for tx in [*history, back]:
        [expired] = operator.process(tx, expired_store.key("idle"), None)
    part = _partition(tmp_path)
    for tx in history:
        operator.process(tx, part.store.key("idle"), None)
    assert part.clock is not None
    part.clock.saw(T0 + 9 * HOUR, now_ms=0)
    assert part.sweep(10) == ["idle"] and part.store.get("idle") is None
    [swept] = operator.process(back, part.store.key("idle"), None)
    assert msgspec.structs.replace(swept, scored_at=0) == msgspec.structs.replace(expired, scored_at=0)
    assert swept.state_version == 1
    part.close()


def test_the_changelog_applies_tombstones_and_new_lifetimes(tmp_path: Path) -> None:
    store: RocksVersionedStore[Any] = RocksVersionedStore(tmp_path / "s", RISK_STATE_CODEC, retention=RetentionPolicy())
    source: MemoryVersionedStore[RiskState] = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    records = []
    for i in range(3):
        source.key("a").put(RiskState(), event_time=T0 + i)
        latest = source.key("a").get()
        assert latest is not None
        records.append(changelog_record("a", latest))
    for raw in records:
        assert apply_record(store, b"a", raw, RiskState)[0]
    assert not apply_record(store, b"a", records[1], RiskState)[0]  # a version it has: skipped
    assert apply_record(store, b"a", None, RiskState) == (True, None)  # a tombstone forgets the key
    assert store.get("a") is None and not apply_record(store, b"a", b"", RiskState)[0]
    for raw in records[:2]:
        apply_record(store, b"a", raw, RiskState)
    source.forget("a")
    source.key("a").put(RiskState(), event_time=T0 + 5 * HOUR)
    restarted = source.key("a").get()
    assert restarted is not None and restarted.version == 1
    assert apply_record(store, b"a", changelog_record("a", restarted), RiskState)[0]  # a new lifetime
    latest = store.get("a")
    assert latest is not None and (latest.version, latest.event_time) == (1, T0 + 5 * HOUR)
    assert store.history("a", 5) == [latest]
    with pytest.raises(ChangelogGapError, match="jumps from version 1 to 3"):
        apply_record(store, b"a", records[2], RiskState)
    store.close()


def test_a_new_key_is_first_checked_when_it_will_be_due_once_the_pace_is_known() -> None:
    clock = EventClock(HOUR, first_check_ms=60_000)
    clock.saw(T0, now_ms=0)
    assert clock.first_check_ms_for(T0, now_ms=10) == 60_010  # pace not measured yet: the configured delay
    clock.saw(T0 + 10 * HOUR, now_ms=MIN_PACE_SPAN_MS)  # 10 h of events in a second: pace 36,000
    due_in = int((SWEEP_AFTER_TTLS * HOUR) / (10 * HOUR / MIN_PACE_SPAN_MS)) + 1
    assert clock.first_check_ms_for(T0 + 10 * HOUR, now_ms=MIN_PACE_SPAN_MS) == MIN_PACE_SPAN_MS + 60_000
    clock.first_check_ms = 10
    assert clock.first_check_ms_for(T0 + 10 * HOUR, now_ms=MIN_PACE_SPAN_MS) == MIN_PACE_SPAN_MS + due_in
