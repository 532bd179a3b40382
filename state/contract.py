"""The versioned-state contract: what one key's state (`VersionedState`) and a store of many keys
(`VersionedStore`) promise, and the small value types they exchange.

Semantics shared by every implementation (the contract tests in `tests/unit/state` check them all):

* **Versions.** Each key has its own version counter. The first `put` returns 1; every later `put`
  returns the previous latest version + 1. Version numbers are never reused, not even after the key is
  deleted: a `put` after `delete` continues from the deleted key's last version.
* **Event time.** Each version records the event time (epoch milliseconds, signed 64-bit) of the
  event that produced it and, optionally, the Kafka coordinates of that event. Events may arrive out
  of order, so event times need not increase with versions.
* **`as_of_time(t)`** returns the *highest version whose event time is <= t*, i.e. the state the
  operator had produced after the last event (in processing order) that happened at or before `t`.
  It returns None if no retained version qualifies (because none exists or retention pruned it).
  Because retention prunes a prefix of the versions (below), a non-None answer is always the same
  answer the unpruned history would give.
* **Retention** (`RetentionPolicy`) is applied on `put`, from the oldest retained version forward,
  and stops at the first version it must keep; so the retained versions always form the contiguous
  range `[oldest, latest]`. `max_versions=N` keeps the newest N versions. `horizon_ms=H` drops the
  oldest versions while their event time is older than `W - H`, where `W` is the highest event time
  ever put for the key (the key's event-time watermark; processing time is never used, so replays
  prune identically). The latest version is never pruned. Pruning never reads stored records (the
  layout, `state.layout`, keeps every retained version's event time in the key's head).
* **Side data.** Besides its versions a key has unversioned *side entries*: named bytes (`side`,
  `put_side`) such as the event ids it saw, stored once per key and written only when changed, never
  copied into versions. `as_of`/`history` do not see them; `forget` and `delete` drop them with the
  versions; checkpoints and write batches include them. `inline=True` keeps a small entry (at most
  `state.layout.MAX_INLINE_BYTES`) inside the key's head, for data that changes with nearly every event:
  it is then written with the head at no extra write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Generic, Protocol, TypeVar

import msgspec

T = TypeVar("T")

MIN_EVENT_TIME = -(2**63)
MAX_EVENT_TIME = 2**63 - 1


class SourceCoordinates(msgspec.Struct, frozen=True):
    """Where the event that produced a state version came from: Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class StateVersion(msgspec.Struct, Generic[T], frozen=True):
    """One immutable version of one key's state.

    `version` is the per-key version number (>= 1), `event_time` the event time in epoch ms of the
    event that produced it, `value` the state itself, `source` the event's Kafka coordinates if known.
    """

    version: int
    event_time: int
    value: T
    source: SourceCoordinates | None = None


class RetentionPolicy(msgspec.Struct, frozen=True):
    """How much history a store keeps per key (see the module docstring for the exact rules).

    `max_versions`: keep at most this many newest versions (>= 1), None for no count limit.
    `horizon_ms`: drop versions whose event time is more than this many ms older than the key's
    newest event time (>= 0), None for no time limit. `RetentionPolicy()` keeps everything.
    """

    max_versions: int | None = None
    horizon_ms: int | None = None

    def __post_init__(self) -> None:
        if self.max_versions is not None and self.max_versions < 1:
            raise ValueError(f"RetentionPolicy.max_versions must be >= 1 or None, got {self.max_versions}")
        if self.horizon_ms is not None and self.horizon_ms < 0:
            raise ValueError(f"RetentionPolicy.horizon_ms must be >= 0 or None, got {self.horizon_ms}")


#: The retention every backend uses when none is given: the newest 16 versions of each key.
DEFAULT_RETENTION = RetentionPolicy(max_versions=16)


class VersionedState(Protocol[T]):
    """The versioned state of ONE key (what an operator sees while processing an event of that key)."""

    def get(self) -> StateVersion[T] | None:
        """The latest version, or None if the key has no state."""
        ...

    def put(self, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store `value` as a new version produced by an event at `event_time`; return its version."""
        ...

    def as_of(self, version: int) -> StateVersion[T] | None:
        """The state exactly at `version`, or None if that version does not exist or was pruned."""
        ...

    def as_of_time(self, event_time: int) -> StateVersion[T] | None:
        """The highest retained version whose event time is <= `event_time`, or None."""
        ...

    def history(self, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions, newest first."""
        ...

    def forget(self) -> None:
        """Drop every version, the version counter and the side entries, as if the key never had state: the
        next `put` is version 1 (what an expired key does)."""
        ...

    def side(self, name: str) -> bytes | None:
        """The key's side entry `name` (unversioned), or None."""
        ...

    def put_side(self, name: str, value: bytes | None, *, inline: bool = False) -> None:
        """Set the side entry `name` to `value` (None removes it); `inline` keeps a small entry in the head."""
        ...


class VersionedStore(Protocol[T]):
    """Versioned state of many keys, with atomic multi-key writes, checkpoints and retention.

    Restoring a checkpoint is a classmethod of each implementation (its arguments differ by backend).
    """

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        ...

    def key(self, key: str) -> VersionedState[T]:
        """The versioned state of `key` (a cheap handle; the key need not exist yet)."""
        ...

    def delete(self, key: str) -> None:
        """Remove every version and side entry of `key` (its version counter is kept, so versions are never
        reused)."""
        ...

    def forget(self, key: str) -> None:
        """Remove every version of `key` and its version counter (an expired key: its next put is version 1,
        nothing of it is kept)."""
        ...

    def keys(self) -> Iterator[str]:
        """The keys that currently have state."""
        ...

    def write_batch(self) -> AbstractContextManager[None]:
        """A context in which puts and deletes on any keys commit together, all or nothing.

        Reads inside the context see the batch's own writes. If the block raises, nothing is written.
        """
        ...

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent, self-contained copy of the committed state to the new directory `path`."""
        ...

    def close(self) -> None:
        """Release the store's resources; later operations raise `StoreClosedError`."""
        ...


def check_event_time(event_time: int) -> int:
    """Validate an event time (an int within signed 64 bits) and return it."""
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        raise TypeError(f"event_time must be an int (epoch ms), got {type(event_time).__name__}")
    if not MIN_EVENT_TIME <= event_time <= MAX_EVENT_TIME:
        raise ValueError(f"event_time must fit in a signed 64-bit integer, got {event_time}")
    return event_time


def check_key(key: str) -> bytes:
    """Validate a state key (a non-empty str without NUL characters) and return its UTF-8 bytes."""
    if not isinstance(key, str):
        raise TypeError(f"state keys are str, got {type(key).__name__}")
    if not key:
        raise ValueError("state keys must be non-empty")
    if "\x00" in key:
        raise ValueError(f"state keys must not contain NUL characters, got {key!r}")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"state key {key!r} is not encodable as UTF-8: {exc}") from exc


def check_limit(limit: int) -> int:
    """Validate a `history` limit (an int >= 0) and return it."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"history limit must be an int >= 0, got {limit!r}")
    return limit
