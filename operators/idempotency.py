"""Idempotency by event time: a key recognises a re-sent `event_id` for a window of event time, whatever its traffic.

A retry (an upstream retry, a producer restart re-sending its last batch) is the same event: same `event_id`,
same `ts`. A key remembers the ids of its events whose `ts` lies within `window_ms` of the newest `ts` it has
seen; a re-sent event inside that window changes nothing and returns no result (counted in `duplicates`). One
outside it (its `ts` older than the key's newest minus the window) is not recognised and is applied as a new
event — the window is the promise, so choose it longer than any re-send delay upstream (default 24 h).

Memory per key is bounded by the events of one window, and by `max_ids` (default 10,000: 80 KB; a key busier
than that in one window remembers its newest `max_ids` ids, so its effective window is shorter). Each id is
kept as a 64-bit BLAKE2b digest (8 bytes), so two different ids are mistaken for each other with probability
about n / 2**64 per lookup (5e-16 with 10,000 ids in the window), in one blob grouped in time buckets of 1/24
of the window; a whole bucket is dropped once every id in it is older than the window. A lookup is one C scan
of the blob (`bytes.find`: under a microsecond for a quiet key, tens of microseconds for 10,000 ids), an insert
appends to it (a late event goes into its own, older bucket). The remembered ids are part of the key's
versioned state (`SeenEventIds`), so they are checkpointed, restored and replayed with it, and the same in
every runtime, offline and in the harness; note that every retained version carries them, so a key's state
costs up to 8 bytes x ids in the window x `retention_versions` (the soak benchmark shows it filling up).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

import msgspec

#: The default window of event time in which a re-sent event id is recognised.
DEFAULT_WINDOW_MS = 24 * 3_600_000
#: The most ids a key remembers (80 KB): a key with more events in one window remembers its newest ones.
DEFAULT_MAX_IDS = 10_000
BUCKETS_PER_WINDOW = 24
_DIGEST = 8


class SeenEventIds(msgspec.Struct, kw_only=True, array_like=True):
    """The event ids a key saw within the window: the newest event time, the digests (8 bytes each, in
    arrival order within a bucket) in one blob, and per time bucket its start time (ms, ascending) and where its
    digests end in the blob."""

    newest_ts: int = 0
    starts: list[int] = msgspec.field(default_factory=list)
    ends: list[int] = msgspec.field(default_factory=list)
    blob: bytes = b""

    def __len__(self) -> int:
        return len(self.blob) // _DIGEST


def digest(event_id: str) -> bytes:
    """The 8-byte digest an event id is remembered by."""
    return hashlib.blake2b(event_id.encode(), digest_size=_DIGEST).digest()


def _contains(blob: bytes, value: bytes) -> bool:
    at = blob.find(value)
    while at >= 0:  # a match must start on a digest boundary (a straddling one is as likely as a collision)
        if at % _DIGEST == 0:
            return True
        at = blob.find(value, at + 1)
    return False


class IdempotencyWindow:
    """Recognises re-sent event ids within `window_ms` of event time (see the module docstring)."""

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS, max_ids: int = DEFAULT_MAX_IDS) -> None:
        if not isinstance(window_ms, int) or isinstance(window_ms, bool) or window_ms < BUCKETS_PER_WINDOW:
            raise ValueError(f"the idempotency window must be an int of at least {BUCKETS_PER_WINDOW} ms, "
                             f"got {window_ms!r}")
        if not isinstance(max_ids, int) or isinstance(max_ids, bool) or max_ids < 1:
            raise ValueError(f"the most ids a key remembers must be an int >= 1, got {max_ids!r}")
        self.window_ms = window_ms
        self._max_bytes = max_ids * _DIGEST
        self.bucket_ms = window_ms // BUCKETS_PER_WINDOW
        self._last: tuple[str, bytes] = ("", b"")  # the digest `seen` computed, reused by `remember`

    def _digest(self, event_id: str) -> bytes:
        last_id, value = self._last
        if last_id != event_id or not value:
            value = digest(event_id)
            self._last = (event_id, value)
        return value

    def seen(self, seen: SeenEventIds, event_id: str, ts: int, legacy: Sequence[str] = ()) -> bool:
        """Whether the event (`event_id` at `ts`) is a re-send of one the key saw within the window; `legacy`:
        ids a state written before the window existed remembered (its last 32)."""
        if legacy and event_id in legacy:
            return True
        if not seen.blob or ts < seen.newest_ts - self.window_ms:
            return False
        return _contains(seen.blob, self._digest(event_id))

    def remember(self, seen: SeenEventIds, event_id: str, ts: int) -> SeenEventIds:
        """A new `SeenEventIds` with the event added and the buckets past the window dropped (`seen`, part of an
        earlier state version, is left as it was)."""
        newest = max(seen.newest_ts, ts)
        horizon = newest - self.window_ms
        starts, ends, blob = seen.starts, seen.ends, seen.blob
        first = 0
        while first < len(starts) and starts[first] + self.bucket_ms <= horizon:  # every id in it is past
            first += 1
        if first:
            cut = ends[first - 1]
            starts, ends, blob = starts[first:], [end - cut for end in ends[first:]], blob[cut:]
        else:
            starts, ends = list(starts), list(ends)
        if ts < horizon:
            return SeenEventIds(newest_ts=newest, starts=starts, ends=ends, blob=blob)
        start = ts - ts % self.bucket_ms
        value = self._digest(event_id)
        if starts and starts[-1] == start:  # the usual case: the newest bucket
            ends[-1] += _DIGEST
            blob += value
        elif not starts or start > starts[-1]:
            starts.append(start)
            ends.append(len(blob) + _DIGEST)
            blob += value
        else:  # a late event: into its (older) bucket
            at = bisect.bisect_left(starts, start)
            if starts[at] != start:
                starts.insert(at, start)
                ends.insert(at, ends[at - 1] if at else 0)
            cut = ends[at]
            blob = blob[:cut] + value + blob[cut:]
            for i in range(at, len(ends)):
                ends[i] += _DIGEST
        excess = len(blob) - self._max_bytes
        if excess > 0:  # a key busier than max_ids per window: forget its oldest ids first
            blob = blob[excess:]
            kept = [(start, end - excess) for start, end in zip(starts, ends, strict=True) if end - excess > 0]
            starts, ends = [start for start, _ in kept], [end for _, end in kept]
        return SeenEventIds(newest_ts=newest, starts=starts, ends=ends, blob=blob)
