"""Idempotency by event time: a key recognises a re-sent `event_id` for a window of event time, whatever its traffic.

A retry (an upstream retry, a producer restart re-sending its last batch) is the same event: same `event_id`,
same `ts`. A key remembers the ids of its events whose `ts` lies within `window_ms` of the newest `ts` it has
seen; a re-sent event inside that window changes nothing and returns no result (counted in `duplicates`). One
outside it (its `ts` older than the key's newest minus the window) is not recognised and is applied as a new
event — the window is the promise, so choose it longer than any re-send delay upstream (default 24 h).

Each id is kept as a 64-bit BLAKE2b digest (8 bytes), so two different ids are mistaken for each other with
probability about n / 2**64 per lookup (5e-16 with 10,000 ids in the window).

**Where the ids live.** Not in the key's versions: in its unversioned side data (`VersionedState.side`), in
chunks of `CHUNK_IDS` (64) digests in arrival order, so an event writes a bounded number of bytes whatever the
window holds:

* `ids` (inline, in the key's head, rewritten with every version at no extra write): the newest `ts` the key
  has seen, the numbers of its sealed chunks (`first` up to `next - 1`), the first sealed chunk's largest `ts`,
  and the *open* chunk: up to 64 digests and their largest `ts`. At most 553 bytes.
* `ids/<n>` (one per sealed chunk, written once when the open chunk fills, never rewritten): the chunk's
  largest `ts` and its 64 digests (520 bytes).

* `ids/filter` (written when a chunk is sealed, never on other events): a Bloom filter over the digests of the
  sealed chunks (10 bits and 7 probes per id: a new id is mistaken for a remembered one about once in 120
  lookups at full capacity), so a lookup reads the sealed chunks only when the filter says "maybe". Without
  it, every new id of a key holding 10,000 ids read and scanned its 156 chunks (the scoring step's CPU per
  event: 512 us, against 256 us with the filter; `benchmarks/state_bytes_bench.py`). The filter may also hold
  ids of chunks already forgotten (those only cost false "maybe"s); it is rebuilt from the live chunks, 1.25x
  their count in capacity, when what it holds would exceed its capacity, and deleted with the last sealed chunk.
  State written before it (sealed chunks without a filter) gets one built from its chunks the first time a
  lookup or a seal needs it.

A chunk is forgotten as a whole once every id in it is past the window (its largest `ts` is older than the
newest minus the window): the open chunk is emptied, sealed chunks are deleted oldest first (a sealed chunk
behind an older one still inside the window waits for it: late events can make a later chunk expire first).
An insert appends to the open chunk (a late event inside the window too); an event older than the window is
not remembered. A lookup checks the open chunk, then the filter, then (on a "maybe") the sealed chunks.

**Bounds.** `max_ids` (default 10,000: 80 KB) bounds what a key remembers: a key busier than that in one window
remembers its newest ids in whole chunks, at least `max_ids` and fewer than `max_ids` + a chunk (its oldest
sealed chunk is deleted while the others still hold `max_ids`), so its effective window is shorter. Chunks
are `min(64, max_ids)` digests, so a small `max_ids` is kept as closely.

**Older state.** Versions written before 2026-12-06 carry the ids inside the value (`SeenEventIds`, and before
the window `recent_event_ids`, the last 32 ids): the operator reads them from the key's latest version the
first time it touches the key (`IdempotencyWindow.load`) and the next write moves them into the side data
(the versions it writes no longer carry them).

Per key, `load` reads the state once into a `KeyIds` that `seen` and `remember` use and change in memory; `store`
writes what changed (the inline entry, a sealed chunk, a deleted chunk), once per key and batch.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import msgspec

from operators.id_filter import IdFilter
from state.contract import VersionedState

#: The default window of event time in which a re-sent event id is recognised.
DEFAULT_WINDOW_MS = 24 * 3_600_000
#: The most ids a key remembers (80 KB): a key with more events in one window remembers its newest ones.
DEFAULT_MAX_IDS = 10_000
#: Digests per chunk (the open chunk fills up to this, then it is sealed into its own side entry).
CHUNK_IDS = 64
#: The inline side entry with the key's newest time, its sealed chunk range and the open chunk.
IDS_ENTRY = "ids"
#: The side entry with the Bloom filter over the sealed chunks' digests.
FILTER_ENTRY = "ids/filter"
#: The smallest filter capacity, in ids (a 640-byte filter).
FILTER_MIN_IDS = 512
#: How versions written before 2026-12-06 grouped their ids (buckets of 1/24 of the window).
LEGACY_BUCKETS_PER_WINDOW = 24
_DIGEST = 8
_FORMAT = 1
# ids: format, newest ts, open chunk's largest ts, first sealed chunk's largest ts, first, next; then the open chunk
_HEADER = struct.Struct(">BqqqII")
_TS = struct.Struct(">q")

_blake2b = hashlib.blake2b


class SeenEventIds(msgspec.Struct, kw_only=True, array_like=True):
    """How versions written before 2026-12-06 kept the ids (inside the value; read to fold them into side data):
    the newest event time, the digests (8 bytes each, in arrival order within a bucket) in one blob, and per
    time bucket its start time (ms, ascending) and where its digests end in the blob."""

    newest_ts: int = 0
    starts: list[int] = msgspec.field(default_factory=list)
    ends: list[int] = msgspec.field(default_factory=list)
    blob: bytes = b""

    def __len__(self) -> int:
        return len(self.blob) // _DIGEST


def digest(event_id: str) -> bytes:
    """The 8-byte digest an event id is remembered by."""
    return _blake2b(event_id.encode(), digest_size=_DIGEST).digest()


def chunk_name(number: int) -> str:
    """The side entry of sealed chunk `number`."""
    return f"ids/{number}"


def _contains(blob: bytes, value: bytes, start: int = 0) -> bool:
    """Whether `value` is one of the digests of `blob` from `start` on (digests aligned on 8 bytes)."""
    at = blob.find(value, start)
    while at >= 0:  # a match must start on a digest boundary (a straddling one is as likely as a collision)
        if at % _DIGEST == 0:
            return True
        at = blob.find(value, at + 1)
    return False


class KeyIds:
    """The remembered ids of one key, read from its side data (`IdempotencyWindow.load`), changed in memory by
    `IdempotencyWindow.remember`, written by `IdempotencyWindow.store`."""

    __slots__ = (
        "_chunks", "_created", "_deleted", "_dirty", "_filter", "_filter_dirty", "_filter_read", "_state",
        "first", "first_max_ts", "legacy", "newest_ts", "next", "open", "open_max_ts",
    )

    def __init__(self, state: VersionedState[Any] | None) -> None:
        self._state = state
        self.newest_ts = 0
        self.open = b""
        self.open_max_ts = 0
        self.first = 0
        self.next = 0
        self.first_max_ts = 0
        #: Ids a version written before the window remembered (its last 32), recognised whatever their time.
        self.legacy: Sequence[str] = ()
        self._chunks: dict[int, bytes] = {}  # sealed chunks read or sealed so far
        self._created: set[int] = set()  # sealed since the last store
        self._deleted: set[int] = set()  # deleted since the last store (and stored before)
        self._dirty = False
        self._filter: IdFilter | None = None  # the filter over the sealed chunks, once read or built
        self._filter_read = state is None  # whether `_filter` is what the key has (a new key has none)
        self._filter_dirty = False

    def chunk(self, number: int) -> bytes:
        """Sealed chunk `number` (its largest ts, then its digests); empty if the side data lacks it."""
        found = self._chunks.get(number)
        if found is None:
            found = (self._state.side(chunk_name(number)) if self._state is not None else None) or b""
            self._chunks[number] = found
        return found

    def chunk_max_ts(self, number: int) -> int:
        """The largest ts of sealed chunk `number` (0 if it is missing)."""
        raw = self.chunk(number)
        return _TS.unpack_from(raw)[0] if len(raw) >= _TS.size else 0

    def encode(self) -> bytes:
        """The inline entry."""
        return _HEADER.pack(_FORMAT, self.newest_ts, self.open_max_ts, self.first_max_ts, self.first, self.next) + (
            self.open
        )


class IdempotencyWindow:
    """Recognises re-sent event ids within `window_ms` of event time (see the module docstring)."""

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS, max_ids: int = DEFAULT_MAX_IDS) -> None:
        if not isinstance(window_ms, int) or isinstance(window_ms, bool) or window_ms < LEGACY_BUCKETS_PER_WINDOW:
            raise ValueError(f"the idempotency window must be an int of at least {LEGACY_BUCKETS_PER_WINDOW} ms, "
                             f"got {window_ms!r}")
        if not isinstance(max_ids, int) or isinstance(max_ids, bool) or max_ids < 1:
            raise ValueError(f"the most ids a key remembers must be an int >= 1, got {max_ids!r}")
        self.window_ms = window_ms
        self.max_ids = max_ids
        self.chunk_ids = min(CHUNK_IDS, max_ids)
        self._chunk_bytes = self.chunk_ids * _DIGEST
        self._last: tuple[str, bytes] = ("", b"")  # the digest `seen` computed, reused by `remember`

    def _digest(self, event_id: str) -> bytes:
        last_id, value = self._last
        if last_id != event_id or not value:
            value = digest(event_id)
            self._last = (event_id, value)
        return value

    def load(
        self, state: VersionedState[Any], legacy: SeenEventIds | None = None, legacy_ids: Sequence[str] = (),
        legacy_ts: int = 0,
    ) -> KeyIds:
        """The key's remembered ids from its side data; when it has none yet, from what its latest version
        carried before 2026-12-06 (`legacy`: its `seen_ids`; `legacy_ids`: its `recent_event_ids`, remembered at
        `legacy_ts`), which the next `store` moves into side data."""
        ids = KeyIds(state)
        raw = state.side(IDS_ENTRY)
        if raw is not None:
            if len(raw) < _HEADER.size or raw[0] != _FORMAT:
                raise ValueError(f"side entry {IDS_ENTRY!r} of {len(raw)} bytes is not idempotency ids format "
                                 f"{_FORMAT}")
            _, ids.newest_ts, ids.open_max_ts, ids.first_max_ts, ids.first, ids.next = _HEADER.unpack_from(raw)
            ids.open = raw[_HEADER.size:]
            return ids
        if legacy is not None and legacy.blob:
            self._fold(ids, legacy)
        if legacy_ids:
            ids.legacy = legacy_ids
            for event_id in legacy_ids:  # what the version written before the window remembered: folded in once
                self.remember(ids, event_id, legacy_ts)
        return ids

    def new(self) -> KeyIds:
        """No remembered ids (a new or an expired key: its side data is forgotten with its versions)."""
        ids = KeyIds(None)
        ids._dirty = True
        return ids

    def _fold(self, ids: KeyIds, legacy: SeenEventIds) -> None:
        """Append a version's `SeenEventIds` (each id's time known to its bucket: taken as the bucket's end)."""
        bucket_ms = self.window_ms // LEGACY_BUCKETS_PER_WINDOW
        begin = 0
        for start, end in zip(legacy.starts, legacy.ends, strict=False):
            ts = min(start + bucket_ms - 1, legacy.newest_ts)
            for at in range(begin, end, _DIGEST):
                self._insert(ids, legacy.blob[at:at + _DIGEST], ts, max(ids.newest_ts, legacy.newest_ts))
            begin = end
        ids.newest_ts = max(ids.newest_ts, legacy.newest_ts)
        ids._dirty = True

    def count(self, ids: KeyIds) -> int:
        """How many ids `ids` remembers (every sealed chunk is full)."""
        return (ids.next - ids.first) * self.chunk_ids + len(ids.open) // _DIGEST

    def seen(self, ids: KeyIds, event_id: str, ts: int) -> bool:
        """Whether the event (`event_id` at `ts`) is a re-send of one the key saw within the window."""
        if ids.legacy and event_id in ids.legacy:
            return True
        if ts < ids.newest_ts - self.window_ms:
            return False
        sealed = ids.next > ids.first
        if not ids.open and not sealed:
            return False
        value = self._digest(event_id)
        if _contains(ids.open, value):
            return True
        if not sealed:
            return False
        id_filter = self._filter_of(ids)
        if id_filter is not None and not id_filter.may_hold(value):
            return False
        return any(_contains(ids.chunk(n), value, _TS.size) for n in range(ids.first, ids.next))

    def _read_filter(self, ids: KeyIds) -> IdFilter | None:
        """The key's filter as stored (or as changed since), without building one."""
        if not ids._filter_read:
            ids._filter_read = True
            raw = ids._state.side(FILTER_ENTRY) if ids._state is not None else None
            ids._filter = IdFilter.decode(raw, FILTER_ENTRY) if raw is not None else None
        return ids._filter

    def _filter_of(self, ids: KeyIds) -> IdFilter | None:
        """The key's filter, built from its sealed chunks if it has some but no filter (older state)."""
        found = self._read_filter(ids)
        if found is None and ids.next > ids.first:
            return self._rebuild_filter(ids)
        return found

    def _rebuild_filter(self, ids: KeyIds) -> IdFilter:
        """A filter over the live sealed chunks only, sized 1.25x their ids (and at least one chunk more)."""
        live = (ids.next - ids.first) * self.chunk_ids
        capacity = max(min(FILTER_MIN_IDS, self.max_ids + self.chunk_ids), -(-live * 5 // 4), live + self.chunk_ids)
        rebuilt = IdFilter(capacity)
        for number in range(ids.first, ids.next):
            rebuilt.add(ids.chunk(number)[_TS.size:])
        ids._filter = rebuilt
        ids._filter_dirty = True
        ids._dirty = True
        return rebuilt

    def _filter_sealed(self, ids: KeyIds, digests: bytes) -> None:
        """Add a chunk just sealed (and still live) to the filter; rebuild it when it would exceed its
        capacity (it then forgets the ids of dropped chunks) or when the key has none yet."""
        found = self._read_filter(ids)
        if found is None or found.added + len(digests) // _DIGEST > found.capacity:
            self._rebuild_filter(ids)  # from the live chunks: the new one among them
            return
        found.add(digests)
        ids._filter_dirty = True

    def remember(self, ids: KeyIds, event_id: str, ts: int) -> None:
        """Add the event to `ids` (in memory) and forget the chunks past the window or beyond `max_ids`."""
        self._insert(ids, self._digest(event_id), ts, max(ids.newest_ts, ts))

    def _insert(self, ids: KeyIds, value: bytes, ts: int, newest: int) -> None:
        ids.newest_ts = newest
        ids._dirty = True
        horizon = newest - self.window_ms
        if ids.open and ids.open_max_ts < horizon:  # every id of the open chunk is past the window
            ids.open = b""
        while ids.first < ids.next and ids.first_max_ts < horizon:
            self._drop_first(ids)
        if ts < horizon:  # outside the window already: not remembered
            return
        ids.open_max_ts = ts if not ids.open or ts > ids.open_max_ts else ids.open_max_ts
        ids.open += value
        sealed = b""
        if len(ids.open) >= self._chunk_bytes:
            number = ids.next
            sealed = ids.open
            ids._chunks[number] = _TS.pack(ids.open_max_ts) + sealed
            ids._created.add(number)
            if ids.first == ids.next:
                ids.first_max_ts = ids.open_max_ts
            ids.next += 1
            ids.open = b""
        while ids.first < ids.next and self.count(ids) - self.chunk_ids >= self.max_ids:  # the rest hold max_ids
            self._drop_first(ids)
        if sealed and ids.first < ids.next:
            self._filter_sealed(ids, sealed)

    def _drop_first(self, ids: KeyIds) -> None:
        number = ids.first
        ids._chunks.pop(number, None)
        if number in ids._created:
            ids._created.discard(number)
        else:
            ids._deleted.add(number)
        ids.first += 1
        ids.first_max_ts = ids.chunk_max_ts(ids.first) if ids.first < ids.next else 0
        if ids.first == ids.next and self._read_filter(ids) is not None:  # the last sealed chunk: no filter
            ids._filter = None
            ids._filter_dirty = True

    def store(self, ids: KeyIds, state: VersionedState[Any]) -> None:
        """Write what changed since `load`/`new` (or the last `store`) into the key's side data: deleted chunks,
        sealed chunks, the filter, then the inline entry."""
        if not ids._dirty:
            return
        if ids._deleted:
            for number in sorted(ids._deleted):
                state.put_side(chunk_name(number), None)
            ids._deleted.clear()
        if ids._created:
            for number in sorted(ids._created):
                state.put_side(chunk_name(number), ids._chunks[number])
            ids._created.clear()
        if ids._filter_dirty:
            state.put_side(FILTER_ENTRY, ids._filter.encode() if ids._filter is not None else None)
            ids._filter_dirty = False
        state.put_side(IDS_ENTRY, ids.encode(), inline=True)
        ids._dirty = False
        ids._state = state
        ids.legacy = ()
