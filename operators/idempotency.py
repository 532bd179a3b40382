"""Idempotency by event time: a key recognises a re-sent `event_id` for a window of event time, whatever its traffic.

A retry (an upstream retry, a producer restart re-sending its last batch) is the same event: same `event_id`,
same `ts`. A key remembers the ids of its events whose `ts` lies within `window_ms` of the newest `ts` it has
seen; a re-sent event inside that window changes nothing and returns no result (counted in `duplicates`). One
outside it (its `ts` older than the key's newest minus the window) is not recognised and is applied as a new
event — the window is the promise, so choose it longer than any re-send delay upstream (default 24 h).

Memory per key is bounded by the events of one window: each id is kept as a 64-bit BLAKE2b digest (8 bytes), so
two different ids are mistaken for each other with probability about n / 2**64 per lookup — 5e-16 with 10,000
ids in the window — in time buckets of 1/24 of the window, each a sorted run of digests; a whole bucket is
dropped once every id in it is older than the window. A lookup is one scan of a quiet key's ids (a binary search
per bucket for a busy key), an insert rebuilds one bucket. The remembered ids are part of the key's versioned
state (`SeenEventIds`), so they are checkpointed, restored and replayed with it, and the same in every
runtime, offline and in the harness.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

import msgspec

#: The default window of event time in which a re-sent event id is recognised.
DEFAULT_WINDOW_MS = 24 * 3_600_000
BUCKETS_PER_WINDOW = 24
_DIGEST = 8


class SeenEventIds(msgspec.Struct, kw_only=True, array_like=True):
    """The event ids a key saw within the window: the newest event time, and per time bucket (ascending
    `starts`, ms) its ids' digests, sorted and packed 8 bytes each."""

    newest_ts: int = 0
    starts: list[int] = msgspec.field(default_factory=list)
    digests: list[bytes] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(packed) for packed in self.digests) // _DIGEST


def digest(event_id: str) -> bytes:
    """The 8-byte digest an event id is remembered by."""
    return hashlib.blake2b(event_id.encode(), digest_size=_DIGEST).digest()


def _position(packed: bytes, value: bytes) -> int:
    """Where `value` is or would be in the sorted run `packed` (in digests, not bytes)."""
    low, high = 0, len(packed) // _DIGEST
    while low < high:
        middle = (low + high) // 2
        if packed[middle * _DIGEST:(middle + 1) * _DIGEST] < value:
            low = middle + 1
        else:
            high = middle
    return low


#: Runs up to this many bytes are searched by `bytes.find` (one C scan beats a binary search in Python there).
_SCAN_BYTES = 8_192


def _contains(packed: bytes, value: bytes) -> bool:
    if len(packed) > _SCAN_BYTES:
        at = _position(packed, value)
        return packed[at * _DIGEST:(at + 1) * _DIGEST] == value
    at = packed.find(value)
    while at >= 0:  # a match must start on a digest boundary (a straddling one is as likely as a collision)
        if at % _DIGEST == 0:
            return True
        at = packed.find(value, at + 1)
    return False


class IdempotencyWindow:
    """Recognises re-sent event ids within `window_ms` of event time (see the module docstring)."""

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        if not isinstance(window_ms, int) or isinstance(window_ms, bool) or window_ms < BUCKETS_PER_WINDOW:
            raise ValueError(f"the idempotency window must be an int of at least {BUCKETS_PER_WINDOW} ms, "
                             f"got {window_ms!r}")
        self.window_ms = window_ms
        self.bucket_ms = window_ms // BUCKETS_PER_WINDOW

    def seen(self, seen: SeenEventIds, event_id: str, ts: int, legacy: Sequence[str] = ()) -> bool:
        """Whether the event (`event_id` at `ts`) is a re-send of one the key saw within the window; `legacy`:
        ids a state written before the window existed remembered (its last 32)."""
        if legacy and event_id in legacy:
            return True
        buckets = seen.digests
        if not buckets or ts < seen.newest_ts - self.window_ms:
            return False
        value = digest(event_id)
        if len(buckets) == 1:
            return _contains(buckets[0], value)
        if sum(map(len, buckets)) <= _SCAN_BYTES:  # a quiet key: one scan of all its ids
            return _contains(b"".join(buckets), value)
        return any(_contains(packed, value) for packed in buckets)

    def remember(self, seen: SeenEventIds, event_id: str, ts: int) -> SeenEventIds:
        """A new `SeenEventIds` with the event added and the buckets past the window dropped (`seen`, part of an
        earlier state version, is left as it was)."""
        newest = max(seen.newest_ts, ts)
        horizon = newest - self.window_ms
        old = seen.starts
        first = 0
        while first < len(old) and old[first] + self.bucket_ms <= horizon:  # every id in it is past the window
            first += 1
        starts, digests = old[first:], seen.digests[first:]
        if ts < horizon:
            return SeenEventIds(newest_ts=newest, starts=starts, digests=digests)
        start = ts - ts % self.bucket_ms
        value = digest(event_id)
        at = len(starts) if not starts or start > starts[-1] else bisect.bisect_left(starts, start)
        if at < len(starts) and starts[at] == start:
            packed = digests[at]
            cut = _position(packed, value) * _DIGEST
            if packed[cut:cut + _DIGEST] != value:
                digests[at] = packed[:cut] + value + packed[cut:]
        else:
            starts.insert(at, start)
            digests.insert(at, value)
        return SeenEventIds(newest_ts=newest, starts=starts, digests=digests)
