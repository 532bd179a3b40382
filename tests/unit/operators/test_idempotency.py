"""Idempotency by event time: a re-sent event (same event_id and ts) is applied once while it is within the key's
window, whatever the key's traffic (a hot key with thousands of events in the window included); a re-send
outside the window is applied as a new event; memory per key stays bounded by one window of ids.

The ids live in the key's side data (an inline entry with the open chunk, sealed chunks of 64 written once), not
in its versions: the tests check the window, the cap (whole chunks), late events, expiry, the fold of ids older
versions carried, batches against one event at a time, and that a key with 10,000 ids in its window writes a
bounded number of bytes per event (counted by a recording store, not timed)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from models.synthetic import generate_transactions
from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.harness import OperatorHarness
from operators.id_filter import FILTER_BITS_PER_ID, IdFilter
from operators.idempotency import (
    CHUNK_IDS,
    FILTER_ENTRY,
    IDS_ENTRY,
    IdempotencyWindow,
    KeyIds,
    SeenEventIds,
    chunk_name,
    digest,
)
from operators.reco.decoding import click_decoder
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator, SessionState
from operators.reco.schemas import Click
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator, RiskState
from operators.risk.schemas import Transaction
from state import MemoryVersionedStore
from state.contract import SourceCoordinates

HOUR = 3_600_000
T0 = 1_767_225_600_000


def _tx(i: int, ts: int, account: str = "acct-hot") -> dict[str, Any]:
    return {"event_id": f"tx-{i}", "account_id": account, "amount": 10.0 + i % 50, "currency": "EUR",
            "merchant_id": f"m-{i % 40}", "country": "DE", "device_id": "d-1", "ts": ts}


def _remembered(window: IdempotencyWindow, store: MemoryVersionedStore[Any], key: str) -> KeyIds:
    return window.load(store.key(key))


def _ids(window: IdempotencyWindow, events: list[tuple[str, int]]) -> tuple[KeyIds, MemoryVersionedStore[Any]]:
    """`events` (id, ts) remembered one by one for key "k" of a memory store, each stored as the operator does."""
    store: MemoryVersionedStore[Any] = MemoryVersionedStore()
    ids = window.new()
    for event_id, ts in events:
        window.remember(ids, event_id, ts)
        window.store(ids, store.key("k"))
    return window.load(store.key("k")), store


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
    assert state.seen_ids is None and state.recent_event_ids == []
    assert len(RISK_STATE_CODEC.encode(state)) < 1_000  # the version carries no ids
    window = harness.operator.idempotency
    assert window.count(_remembered(window, harness.store, "acct-hot")) == 3_000  # in the side data


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
    ids, store = _ids(window, [(f"e-{i}", T0 + i * 1_000) for i in range(6_000)])  # one a second for 100 minutes
    kept = window.count(ids)
    assert 3_600 <= kept <= 3_600 + CHUNK_IDS  # the last hour, plus at most one chunk not yet past it
    assert window.seen(ids, "e-5999", T0 + 5_999_000) and window.seen(ids, "e-2399", T0 + 2_399_000)  # age 1 h
    assert not window.seen(ids, "e-2398", T0 + 2_398_000)  # 1 h 1 s older than the newest: outside
    sealed = [name for name in store._keys["k"].sides if name.startswith("ids/") and name != FILTER_ENTRY]
    assert len(sealed) == ids.next - ids.first == kept // CHUNK_IDS  # dropped chunks are deleted from the store
    stored_filter = IdFilter.decode(store.key("k").side(FILTER_ENTRY) or b"")  # rebuilt: sized to the window
    assert stored_filter.capacity <= 1.25 * (3_600 + 2 * CHUNK_IDS) + 1
    assert len(store.key("k").side(IDS_ENTRY) or b"") <= 33 + 8 * CHUNK_IDS  # inline: header + open chunk


def test_store_writes_the_inline_entry_and_each_chunk_once() -> None:
    window = IdempotencyWindow(HOUR)
    store = _RecordingStore()
    ids = window.new()
    for i in range(3 * CHUNK_IDS):
        window.remember(ids, f"e-{i}", T0 + i)
        window.store(ids, store.key("k"))
    window.store(ids, store.key("k"))  # nothing changed: nothing written
    inline = [name for name, _, inline in store.sides if inline]
    chunks = [name for name, _, inline in store.sides if not inline and name != FILTER_ENTRY]
    filters = [name for name, _, _ in store.sides if name == FILTER_ENTRY]
    assert len(inline) == 3 * CHUNK_IDS and chunks == [chunk_name(0), chunk_name(1), chunk_name(2)]
    assert len(filters) == 3  # once per sealed chunk, never on the other events
    assert store.key("k").side(chunk_name(1)) == (T0 + 2 * CHUNK_IDS - 1).to_bytes(8, "big") + b"".join(
        digest(f"e-{i}") for i in range(CHUNK_IDS, 2 * CHUNK_IDS)
    )


def test_late_events_are_recognised_and_events_older_than_the_window_are_not_remembered() -> None:
    window = IdempotencyWindow(HOUR)
    order = [0, 50, 10, 55, 5, 30, 59, 1]  # minutes after T0, out of order
    ids, _ = _ids(window, [(f"e-{m}", T0 + m * 60_000) for m in order])
    assert window.count(ids) == len(order) and ids.newest_ts == T0 + 59 * 60_000
    for minute in order:
        assert window.seen(ids, f"e-{minute}", T0 + minute * 60_000)
    assert not window.seen(ids, "e-other", T0 + 30 * 60_000)
    window.remember(ids, "e-121", T0 + 121 * 60_000)  # every id so far is older than 1 h before 2:01
    window.remember(ids, "e-too-late", T0 + 60 * 60_000)  # older than the window: not remembered
    assert window.count(ids) == 1 and window.seen(ids, "e-121", T0 + 121 * 60_000)
    assert not window.seen(ids, "e-59", T0 + 59 * 60_000) and not window.seen(ids, "e-too-late", T0 + 60 * 60_000)


def test_a_sealed_chunk_waits_for_an_older_one_still_inside_the_window() -> None:
    window = IdempotencyWindow(HOUR)
    # chunk 0 ends with a late-but-recent event, chunk 1 holds older ones: chunk 0 keeps chunk 1 until it expires
    events = [(f"a-{i}", T0 + 30 * 60_000 + i) for i in range(CHUNK_IDS - 1)] + [("a-late", T0 + 40 * 60_000)]
    events += [(f"b-{i}", T0 + 31 * 60_000 + i) for i in range(CHUNK_IDS)]
    ids, _ = _ids(window, events)
    window.remember(ids, "c", T0 + 95 * 60_000)  # horizon 0:35: chunk 1 (max 0:31) is past, chunk 0 (0:40) is not
    assert ids.first == 0 and window.count(ids) == 2 * CHUNK_IDS + 1
    window.remember(ids, "d", T0 + 101 * 60_000)  # horizon 0:41: both go
    assert ids.first == ids.next == 2 and window.count(ids) == 2


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
    assert latest is not None and latest.value.recent_event_ids == [] and latest.value.seen_ids is None
    assert operator.idempotency.count(_remembered(operator.idempotency, store, "acct-hot")) == 33


def _legacy_seen_ids(window_ms: int, events: list[tuple[str, int]]) -> SeenEventIds:
    """`SeenEventIds` as versions written before 2026-12-06 kept them (in-order events: buckets of window/24)."""
    bucket = window_ms // 24
    starts: list[int] = []
    ends: list[int] = []
    blob = b""
    for event_id, ts in events:
        start = ts - ts % bucket
        if not starts or starts[-1] != start:
            starts.append(start)
            ends.append(len(blob))
        blob += digest(event_id)
        ends[-1] = len(blob)
    return SeenEventIds(newest_ts=max(ts for _, ts in events), starts=starts, ends=ends, blob=blob)


@pytest.mark.parametrize("batched", [False, True])
def test_ids_a_version_carried_are_moved_into_side_data_by_the_next_write(batched: bool) -> None:
    operator = RiskOperator(dedup_window_ms=HOUR)
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    old = [(f"old-{i}", T0 + i * 60_000) for i in range(100)]  # 100 minutes: the first 40 are past the window
    legacy = RiskState(seen_ids=_legacy_seen_ids(HOUR, old), last_event_id="old-99")
    legacy.features.last_ts = legacy.features.newest_ts = T0 + 99 * 60_000
    store.key("acct-hot").put(legacy, event_time=T0 + 99 * 60_000)
    event = lambda eid, ts: msgspec.convert({**_tx(0, ts), "event_id": eid}, type=Transaction)  # noqa: E731
    sent = [event("old-90", T0 + 90 * 60_000), event("new-1", T0 + 100 * 60_000), event("old-50", T0 + 50 * 60_000),
            event("old-30", T0 + 30 * 60_000)]
    items = [BatchItem("acct-hot", e, store.key("acct-hot"), None) for e in sent]
    if batched:
        outcomes = apply_operator_batch(operator, items)
    else:
        outcomes = [operator.process(e, store.key("acct-hot"), None) for e in sent]
    assert [len(o) for o in outcomes] == [0, 1, 0, 1]  # old-30 is older than the window: applied again
    latest = store.key("acct-hot").get()
    assert latest is not None and latest.version == 3 and latest.value.seen_ids is None
    ids = _remembered(operator.idempotency, store, "acct-hot")
    assert operator.idempotency.count(ids) >= 60 + 1  # the window's 60 old ids (whole buckets) and new-1
    assert operator.idempotency.seen(ids, "old-99", T0 + 99 * 60_000)


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
    assert latest.version == 500 and session.seen_ids is None
    window = harness.operator.idempotency
    assert window.count(_remembered(window, harness.store, "s-hot")) == 500


def test_a_key_busier_than_max_ids_remembers_its_newest_ids_in_whole_chunks() -> None:
    """The cap trims whole chunks (a trimmed chunk would be rewritten on every event): a key busier than
    `max_ids` remembers at least its newest `max_ids` ids and fewer than `max_ids` + a chunk."""
    window = IdempotencyWindow(HOUR, max_ids=100)
    ids, _ = _ids(window, [(f"e-{i}", T0 + i * 1_000) for i in range(300)])  # 300 events in 5 minutes
    kept = window.count(ids)
    assert 100 <= kept < 100 + CHUNK_IDS
    assert all(window.seen(ids, f"e-{i}", T0 + i * 1_000) for i in range(300 - kept, 300))
    assert not any(window.seen(ids, f"e-{i}", T0 + i * 1_000) for i in range(300 - kept))


def test_a_small_max_ids_is_kept_closely() -> None:
    window = IdempotencyWindow(HOUR, max_ids=3)
    ids, _ = _ids(window, [(f"e-{i}", T0 + i) for i in range(10)])
    assert window.count(ids) in (3, 4, 5) and window.seen(ids, "e-9", T0 + 9) and not window.seen(ids, "e-0", T0)


def _clicks(n: int, sessions: int, retry_every: int) -> list[Click]:
    clicks = [msgspec.convert({"event_id": f"c-{i}", "user_id": "u", "session_id": f"s-{i % sessions}",
                               "item_id": i % 90, "action": "view", "ts": _ts_of(i)}, type=Click)
              for i in range(n)]
    return _with_retries(clicks, sessions, retry_every)


def _ts_of(i: int) -> int:
    """20 s apart, with a 6 h pause after the 1,000th event (past a 5 h TTL)."""
    return T0 + i * 20_000 + (6 * HOUR if i >= 1_000 else 0)


def _with_retries(events: list[Any], keys: int, retry_every: int) -> list[Any]:
    """`events` with every `retry_every`-th one followed by a re-send of its key's event three before it."""
    out = []
    for i, event in enumerate(events):
        out.append(event)
        if i % retry_every == 0 and i >= 3 * keys:
            out.append(events[i - 3 * keys])
    return out


def _txs(n: int, accounts: int, retry_every: int) -> list[Transaction]:
    txs = [msgspec.convert(_tx(i, _ts_of(i), f"acct-{i % accounts}"), type=Transaction) for i in range(n)]
    return _with_retries(txs, accounts, retry_every)


def _side_data(store: MemoryVersionedStore[Any]) -> dict[str, dict[str, bytes]]:
    return {key: {**data.head.inline, **data.sides} for key, data in store._keys.items()}


@pytest.mark.parametrize("pipeline", ["risk", "reco"])
@pytest.mark.parametrize("batch_size", [7, 64])
def test_batches_give_the_outcomes_and_side_data_of_one_event_at_a_time(pipeline: str, batch_size: int) -> None:
    """Items of one key in one batch see each other's ids (retries inside the batch are dropped); expired keys
    (a short TTL) forget their ids in both paths; chunks seal, expire and are deleted alike."""
    def make() -> Any:
        operator: Any = (RiskOperator(dedup_window_ms=2 * HOUR, ttl_ms=5 * HOUR) if pipeline == "risk" else
                         RecoOperator(dedup_window_ms=2 * HOUR))
        operator.open(OperatorContext())
        return operator
    codec: Any = RISK_STATE_CODEC if pipeline == "risk" else RECO_STATE_CODEC
    events: list[Any] = _txs(1_500, 3, 4) if pipeline == "risk" else _clicks(1_500, 3, 4)
    key_of = (lambda e: e.account_id) if pipeline == "risk" else (lambda e: e.session_id)
    events += events[:40]  # re-sent long after: applied again (outside the window)
    one, batched = make(), make()
    store_one: MemoryVersionedStore[Any] = MemoryVersionedStore(codec)
    store_batched: MemoryVersionedStore[Any] = MemoryVersionedStore(codec)
    singles = [[_plain(r) for r in one.process(e, store_one.key(key_of(e)), None)] for e in events]
    batches: list[Any] = []
    for start in range(0, len(events), batch_size):
        chunk = events[start:start + batch_size]
        items = [BatchItem(key_of(e), e, store_batched.key(key_of(e)), SourceCoordinates("t", 0, start + j))
                 for j, e in enumerate(chunk)]
        batches += [[_plain(r) for r in outcome] for outcome in apply_operator_batch(batched, items)]  # type: ignore[union-attr]
    assert batches == singles
    assert one.duplicates == batched.duplicates > 300
    if pipeline == "risk":
        assert one.expired_keys == batched.expired_keys >= 3  # the 6 h pause: every account restarts
    assert _side_data(store_one) == _side_data(store_batched)
    assert any(name.startswith("ids/") for sides in _side_data(store_one).values() for name in sides)


def _plain(result: Any) -> Any:
    return msgspec.structs.replace(result, scored_at=0)


class _RecordingStore(MemoryVersionedStore[Any]):
    """A memory store that records the bytes of every version and side entry written."""

    def __init__(self, codec: Any = None) -> None:
        super().__init__(codec)
        self.versions: list[int] = []
        self.sides: list[tuple[str, int, bool]] = []

    def put(self, key: str, value: Any, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        self.versions.append(len(self.codec.encode(value)))
        return super().put(key, value, event_time=event_time, source=source)

    def put_side(self, key: str, name: str, value: bytes | None, *, inline: bool = False) -> None:
        self.sides.append((name, len(value or b""), inline))
        super().put_side(key, name, value, inline=inline)


def _bytes_per_event(events: list[dict[str, Any]], measured: int) -> tuple[float, float]:
    """(version bytes, side bytes) written per event over the last `measured` of `events` (one account)."""
    harness_store = _RecordingStore(RISK_STATE_CODEC)
    operator = RiskOperator()
    operator.open(OperatorContext())
    decoded = [msgspec.convert(e, type=Transaction) for e in events]
    for event in decoded[:-measured]:
        operator.process(event, harness_store.key(event.account_id), None)
    harness_store.versions.clear()
    harness_store.sides.clear()
    for event in decoded[-measured:]:
        operator.process(event, harness_store.key(event.account_id), None)
    return (sum(harness_store.versions) / measured, sum(n for _, n, _ in harness_store.sides) / measured)


def test_a_key_with_10000_ids_in_its_window_writes_a_bounded_number_of_bytes_per_event() -> None:
    """Per event, a key whose window holds 10,000 ids writes its version, the inline entry (header + open chunk),
    and every 64 events a 520-byte sealed chunk and its filter (10 bits per id of a capacity of at most 1.25x
    the window, plus a chunk): within 2x of a quiet key (50 events, hours apart)."""
    busy = [_tx(i, T0 + i * 5_000, "acct-busy") for i in range(10_640)]  # 5 s apart: 14.8 h, all in the window
    quiet = [_tx(i, T0 + i * 7 * HOUR, "acct-quiet") for i in range(50)]
    busy_versions, busy_sides = _bytes_per_event(busy, 640)
    quiet_versions, quiet_sides = _bytes_per_event(quiet, 10)
    filter_bytes = 10 + (1.25 * (10_000 + 2 * CHUNK_IDS)) * FILTER_BITS_PER_ID / 8
    assert busy_sides <= 33 + 8 * CHUNK_IDS + (8 + 8 * CHUNK_IDS + filter_bytes) / CHUNK_IDS + 8  # + a delete
    assert busy_versions + busy_sides <= 2 * (quiet_versions + quiet_sides)
    assert busy_versions + busy_sides <= 1_536


class _CountingStore(MemoryVersionedStore[Any]):
    """A memory store that counts the reads of sealed chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.chunk_reads = 0

    def side(self, key: str, name: str) -> bytes | None:
        if name.startswith("ids/") and name != FILTER_ENTRY:
            self.chunk_reads += 1
        return super().side(key, name)


def _stored(window: IdempotencyWindow, events: list[tuple[str, int]]) -> _CountingStore:
    store = _CountingStore()
    ids = window.new()
    for event_id, ts in events:
        window.remember(ids, event_id, ts)
        window.store(ids, store.key("k"))
    store.chunk_reads = 0
    return store


def test_a_new_id_is_answered_by_the_filter_without_reading_the_sealed_chunks() -> None:
    """A key holding 10,000 ids: a lookup of an id it never saw reads no sealed chunk, but for the filter's
    rare false "maybe" (each lookup from a fresh load, as a runtime's next batch would)."""
    window = IdempotencyWindow()
    store = _stored(window, [(f"e-{i}", T0 + i * 5_000) for i in range(10_000)])
    newest = T0 + 9_999 * 5_000
    misses = sum(window.seen(window.load(store.key("k")), f"new-{i}", newest) for i in range(2_000))
    assert misses == 0
    assert store.chunk_reads <= 0.02 * 2_000 * (10_000 // CHUNK_IDS)  # at most 2 % of the lookups scanned
    store.chunk_reads = 0
    assert all(window.seen(window.load(store.key("k")), f"e-{i}", T0 + i * 5_000) for i in range(0, 10_000, 97))
    assert store.chunk_reads > 0  # a remembered id is confirmed in its chunk, never by the filter alone


def test_every_remembered_id_passes_the_filter_through_drops_and_rebuilds() -> None:
    """A window sliding over 20,000 events with `max_ids` 1,000: chunks are dropped and the filter rebuilt many
    times; every id still remembered is recognised from the stored state, and none of those forgotten."""
    window = IdempotencyWindow(HOUR, max_ids=1_000)
    events = [(f"e-{i}", T0 + i * 100) for i in range(20_000)]  # 100 ms apart: the cap binds, not the window
    store = _stored(window, events)
    ids = window.load(store.key("k"))
    kept = window.count(ids)
    assert 1_000 <= kept < 1_000 + CHUNK_IDS
    assert all(window.seen(window.load(store.key("k")), e, ts) for e, ts in events[-kept:])
    assert not any(window.seen(ids, e, ts) for e, ts in events[:-kept])
    stored_filter = IdFilter.decode(store.key("k").side(FILTER_ENTRY) or b"")
    assert stored_filter.capacity <= 1.25 * (1_000 + CHUNK_IDS) + CHUNK_IDS  # rebuilt: not grown with the stream


def test_state_written_before_the_filter_gets_one_built_from_its_chunks_on_first_touch() -> None:
    """Sealed chunks without a filter (the layout before it): a lookup builds the filter from the chunks, gives
    the same answers, and the next store writes it, equal to the one the key would have had."""
    window = IdempotencyWindow()
    events = [(f"e-{i}", T0 + i * 5_000) for i in range(1_000)]
    store = _stored(window, events)
    with_filter = store.key("k").side(FILTER_ENTRY)
    store.key("k").put_side(FILTER_ENTRY, None)  # as the code before the filter left it
    ids = window.load(store.key("k"))
    assert window.seen(ids, "e-3", T0 + 3 * 5_000) and not window.seen(ids, "new", T0 + 999 * 5_000)
    window.store(ids, store.key("k"))
    rebuilt = store.key("k").side(FILTER_ENTRY)
    assert rebuilt is not None and with_filter is not None
    sealed = (ids.next - ids.first) * CHUNK_IDS
    assert sealed == 960 and IdFilter.decode(rebuilt).capacity == 1_200  # 1.25x the live chunks' ids
    assert all(IdFilter.decode(rebuilt).may_hold(digest(e)) for e, _ in events[:sealed])
    store.chunk_reads = 0
    assert not window.seen(window.load(store.key("k")), "new-2", T0 + 999 * 5_000)
    assert store.chunk_reads == 0  # from now on the stored filter answers


def test_the_filter_goes_with_the_last_sealed_chunk_and_a_damaged_one_is_a_clear_error() -> None:
    window = IdempotencyWindow(HOUR)
    store = _stored(window, [(f"e-{i}", T0 + i) for i in range(3 * CHUNK_IDS)])
    assert store.key("k").side(FILTER_ENTRY) is not None
    ids = window.load(store.key("k"))
    window.remember(ids, "later", T0 + 2 * HOUR)  # every sealed chunk is past the window
    window.store(ids, store.key("k"))
    assert ids.first == ids.next and store.key("k").side(FILTER_ENTRY) is None
    store = _stored(window, [(f"e-{i}", T0 + i) for i in range(2 * CHUNK_IDS)])
    store.key("k").put_side(FILTER_ENTRY, b"\x07garbage")
    with pytest.raises(ValueError, match=r"ids/filter.*not an id filter"):
        window.seen(window.load(store.key("k")), "x", T0 + 2 * CHUNK_IDS)
