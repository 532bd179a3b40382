"""`MemoryVersionedStore`: the dict-based versioned store for unit tests, the harness and the offline scorer.

It keeps the layout every backend shares (`state.layout`): per key a `Head` (version range, the retained
versions' event times, inline side entries), version records in slots (a ring of `max_versions`), and side
entries. Values are stored encoded (through the store's codec), so reads return fresh objects exactly like the
persistent backends and codec problems surface in unit tests too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar, overload

import msgspec

from state._handle import KeyState
from state.codec import Codec, MsgpackCodec
from state.contract import (
    DEFAULT_RETENTION,
    MAX_EVENT_TIME,
    MIN_EVENT_TIME,
    RetentionPolicy,
    SourceCoordinates,
    StateVersion,
    check_event_time,
    check_key,
    check_limit,
)
from state.exceptions import (
    CorruptStateError,
    IncompatibleStateError,
    StateDecodeError,
    StateError,
    StoreClosedError,
)
from state.layout import (
    Head,
    LayoutError,
    as_of_time_version,
    check_side_name,
    decode_head,
    deleted_head,
    encode_head,
    plan_put,
    slot_of,
    with_inline,
)

T = TypeVar("T")

#: Version of the memory checkpoint file layout (1: before the shared layout of 2026-12-06, still restored).
MEMORY_CHECKPOINT_FORMAT = 2
CHECKPOINT_FILE = "memory-store.msgpack"


class _Entry(NamedTuple):
    """One stored version record (value encoded)."""

    version: int
    event_time: int
    source: SourceCoordinates | None
    payload: bytes


class _KeyData:
    """One key: its head, its record slots, its (non-inline) side entries."""

    __slots__ = ("head", "sides", "slots")

    def __init__(self, head: Head, slots: dict[int, _Entry], sides: dict[str, bytes]) -> None:
        self.head = head
        self.slots = slots
        self.sides = sides

    def copy(self) -> _KeyData:
        return _KeyData(self.head, dict(self.slots), dict(self.sides))


class _CheckpointHeader(msgspec.Struct):
    format: int
    codec: str


class _CheckpointKey(msgspec.Struct, array_like=True):
    key: str
    head: bytes  # `state.layout.encode_head`
    records: list[tuple[int, int, SourceCoordinates | None, bytes]]  # (version, event_time, source, payload)
    sides: dict[str, bytes]


class _CheckpointFile(msgspec.Struct):
    format: int
    codec: str
    keys: list[_CheckpointKey]


class _CheckpointKeyV1(msgspec.Struct, array_like=True):
    key: str
    max_event_time: int
    records: list[tuple[int, int, SourceCoordinates | None, bytes]]


class _CheckpointFileV1(msgspec.Struct):
    format: int
    codec: str
    keys: list[_CheckpointKeyV1]
    deleted: dict[str, int]


class MemoryVersionedStore(Generic[T]):
    """An in-memory `VersionedStore` in the shared layout (`state.layout`); nothing survives the process.

    `codec` encodes values (default `MsgpackCodec()`, plain Python values); `retention` is applied on every
    put (default `DEFAULT_RETENTION`). `write_batch` keeps an undo copy of each key it touches. Not
    thread-safe.
    """

    @overload
    def __init__(
        self: MemoryVersionedStore[Any], codec: None = None, *, retention: RetentionPolicy = DEFAULT_RETENTION
    ) -> None: ...

    @overload
    def __init__(self, codec: Codec[T], *, retention: RetentionPolicy = DEFAULT_RETENTION) -> None: ...

    def __init__(
        self, codec: Codec[Any] | None = None, *, retention: RetentionPolicy = DEFAULT_RETENTION
    ) -> None:
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        self._ring = retention.max_versions or 0
        self._keys: dict[str, _KeyData] = {}
        self._undo: dict[str, _KeyData | None] | None = None
        self._closed = False

    # -- store API -------------------------------------------------------------------------------

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        return self._retention

    @property
    def codec(self) -> Codec[T]:
        """The codec values are stored with."""
        return self._codec

    def key(self, key: str) -> KeyState[T]:
        """The versioned state of `key`."""
        check_key(key)
        return KeyState(self, key)

    def keys(self) -> Iterator[str]:
        """The keys that currently have state (a snapshot taken when called)."""
        self._check_open()
        return iter([key for key, data in self._keys.items() if not data.head.deleted])

    def delete(self, key: str) -> None:
        """Remove every version and side entry of `key`; its version counter is kept."""
        self._check_open()
        check_key(key)
        data = self._keys.get(key)
        if data is None:
            return
        self._touch(key)
        if data.head.latest == 0:  # side entries only, no version counter to keep
            del self._keys[key]
        else:
            self._keys[key] = _KeyData(deleted_head(data.head.latest), {}, {})

    def forget(self, key: str) -> None:
        """Remove every version, side entry and the version counter of `key`: its next put is version 1, as
        for a key that never had state (what expiry does)."""
        self._check_open()
        check_key(key)
        if key not in self._keys:
            return
        self._touch(key)
        del self._keys[key]

    def write_batch(self) -> AbstractContextManager[None]:
        """A context in which puts and deletes commit together (all or nothing). Nested batches join."""
        self._check_open()
        return self._batch()

    @contextmanager
    def _batch(self) -> Iterator[None]:
        if self._undo is not None:
            yield
            return
        self._undo = {}
        committed = False
        try:
            yield
            committed = True
        finally:
            undo, self._undo = self._undo, None
            if not committed:
                for key, data in undo.items():
                    if data is None:
                        self._keys.pop(key, None)
                    else:
                        self._keys[key] = data

    def _touch(self, key: str) -> None:
        if self._undo is not None and key not in self._undo:
            data = self._keys.get(key)
            self._undo[key] = data.copy() if data is not None else None

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write all committed state to a new directory `path` (refused inside a write batch)."""
        self._check_open()
        if self._undo is not None:
            raise StateError("checkpoint() inside write_batch(): commit the batch first, then checkpoint")
        target = Path(path)
        if target.exists():
            raise StateError(f"checkpoint target {target} already exists; checkpoints need a new directory")
        keys = []
        for key, data in self._keys.items():
            head = data.head
            records = [] if head.deleted else [
                tuple(data.slots[slot_of(v, head.ring)]) for v in range(head.oldest, head.latest + 1)
            ]
            keys.append(_CheckpointKey(key, encode_head(head), records, dict(data.sides)))  # type: ignore[arg-type]
        snapshot = _CheckpointFile(format=MEMORY_CHECKPOINT_FORMAT, codec=self._codec.format_id, keys=keys)
        target.mkdir(parents=True)
        tmp = target / (CHECKPOINT_FILE + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(msgspec.msgpack.encode(snapshot))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target / CHECKPOINT_FILE)

    @overload
    @classmethod
    def restore(
        cls, path: str | os.PathLike[str], codec: None = None,
        *, retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> MemoryVersionedStore[Any]: ...

    @overload
    @classmethod
    def restore(
        cls, path: str | os.PathLike[str], codec: Codec[T],
        *, retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> MemoryVersionedStore[T]: ...

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike[str],
        codec: Codec[Any] | None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> MemoryVersionedStore[Any]:
        """A new store holding the state of the checkpoint directory `path` (format 2, or format 1, converted).

        Raises `IncompatibleStateError` if the checkpoint was written in another format or codec.
        The new retention applies from the next put of each key.
        """
        file = Path(path) / CHECKPOINT_FILE
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read memory-store checkpoint {file}: {exc}") from exc
        store = cls(codec, retention=retention)
        try:
            header = msgspec.msgpack.decode(raw, type=_CheckpointHeader)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IncompatibleStateError(
                str(file), found=f"an unreadable file ({exc})",
                expected=f"a memory-store checkpoint, format {MEMORY_CHECKPOINT_FORMAT}",
                remedy="Point restore() at a directory written by MemoryVersionedStore.checkpoint()",
            ) from exc
        if header.format not in (1, MEMORY_CHECKPOINT_FORMAT):
            raise IncompatibleStateError(
                str(file), found=f"memory checkpoint format {header.format}",
                expected=f"format {MEMORY_CHECKPOINT_FORMAT} (or 1, converted)",
                remedy="It was written by a newer streamscore: restore it with that version, or rebuild state from "
                "the event log",
            )
        if header.codec != store._codec.format_id:
            raise IncompatibleStateError(
                str(file), found=f"values encoded with codec {header.codec!r}",
                expected=f"codec {store._codec.format_id!r}",
                remedy="Restore with the codec it was written with, or rebuild state from the event log",
            )
        try:
            if header.format == 1:
                store._keys = _from_v1(msgspec.msgpack.decode(raw, type=_CheckpointFileV1))
            else:
                store._keys = _from_v2(msgspec.msgpack.decode(raw, type=_CheckpointFile))
        except (msgspec.DecodeError, msgspec.ValidationError, LayoutError, KeyError) as exc:
            raise StateError(f"memory-store checkpoint {file} is damaged: {exc}") from exc
        return store

    def close(self) -> None:
        """Drop all state; later operations raise `StoreClosedError`."""
        self._closed = True
        self._keys.clear()

    def __enter__(self) -> MemoryVersionedStore[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryVersionedStore(keys={len(self._keys)}, retention={self._retention})"

    # -- key-addressed operations (what `KeyState` calls) ------------------------------------------

    def get(self, key: str) -> StateVersion[T] | None:
        """The latest version of `key`, or None."""
        if self._closed:
            self._check_open()
        data = self._keys.get(key)
        if data is None or data.head.deleted:
            return None
        return self._version(key, data, data.head.latest)

    def put(self, key: str, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version of `key`; returns its version number."""
        if self._closed:
            self._check_open()
        data = self._keys.get(key) if type(key) is str else None
        if data is None:
            check_key(key)  # a key with data passed this check at its first put
        if type(event_time) is not int or not MIN_EVENT_TIME <= event_time <= MAX_EVENT_TIME:
            check_event_time(event_time)  # raises with the reason
        payload = self._codec.encode(value)
        if self._undo is not None:
            self._touch(key)
        plan = plan_put(None if data is None else data.head, event_time, self._retention)
        entry = _Entry(plan.version, event_time, source, payload)
        if data is None:
            self._keys[key] = _KeyData(plan.head, {plan.slot: entry}, {})
            return plan.version
        slots = data.slots
        if data.head.deleted:
            slots.clear()
        elif plan.reslot is not None:
            data.slots = slots = _reslot(slots, plan.reslot, plan.head)
        elif not self._ring:
            for version in plan.pruned:
                slots.pop(version, None)
        slots[plan.slot] = entry
        data.head = plan.head
        return plan.version

    def as_of(self, key: str, version: int) -> StateVersion[T] | None:
        """`key` exactly at `version`, or None."""
        self._check_open()
        data = self._keys.get(key)
        if data is None or data.head.deleted or not data.head.oldest <= version <= data.head.latest:
            return None
        return self._version(key, data, version)

    def as_of_time(self, key: str, event_time: int) -> StateVersion[T] | None:
        """The highest retained version of `key` with event time <= `event_time`, or None."""
        self._check_open()
        check_event_time(event_time)
        data = self._keys.get(key)
        if data is None or data.head.deleted:
            return None
        version = as_of_time_version(data.head, event_time)
        return None if version is None else self._version(key, data, version)

    def history(self, key: str, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of `key`, newest first."""
        self._check_open()
        check_limit(limit)
        data = self._keys.get(key)
        if data is None or data.head.deleted:
            return []
        head = data.head
        stop = max(head.oldest, head.latest - limit + 1)
        return [self._version(key, data, v) for v in range(head.latest, stop - 1, -1)]

    def side(self, key: str, name: str) -> bytes | None:
        """The side entry `name` of `key`, or None."""
        if self._closed:
            self._check_open()
        data = self._keys.get(key)
        if data is None:
            return None
        found = data.head.inline.get(name)
        return found if found is not None else data.sides.get(name)

    def put_side(self, key: str, name: str, value: bytes | None, *, inline: bool = False) -> None:
        """Set the side entry `name` of `key` (None removes it); `inline` keeps it in the key's head."""
        if self._closed:
            self._check_open()
        data = self._keys.get(key)
        if data is None:
            check_key(key)
            check_side_name(name)
            if value is None:
                return
            data = _KeyData(deleted_head(0), {}, {})
            if self._undo is not None:
                self._touch(key)
            self._keys[key] = data
        elif self._undo is not None:
            self._touch(key)
        head = data.head
        if inline or name in head.inline:
            data.head = head = with_inline(head, check_side_name(name), value if inline else None)
        if not inline and value is not None:
            data.sides[check_side_name(name)] = value
        elif name in data.sides:
            del data.sides[name]
        if head.latest == 0 and not head.inline and not data.sides:
            del self._keys[key]

    # -- helpers -----------------------------------------------------------------------------------

    def _version(self, key: str, data: _KeyData, version: int) -> StateVersion[T]:
        entry = data.slots.get(slot_of(version, data.head.ring))
        if entry is None or entry.version != version:
            found = "nothing" if entry is None else f"version {entry.version}"
            raise CorruptStateError(key, version, f"its slot holds {found}")
        try:
            value = self._codec.decode(entry.payload)
        except StateDecodeError as exc:
            raise CorruptStateError(key, version, str(exc)) from exc
        return StateVersion(version, entry.event_time, value, entry.source)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("MemoryVersionedStore is closed")


def _reslot(slots: dict[int, _Entry], old_ring: int, head: Head) -> dict[int, _Entry]:
    """The retained older records of `head` moved from the slots of `old_ring` to those of `head.ring`."""
    moved: dict[int, _Entry] = {}
    for version in range(head.oldest, head.latest):
        entry = slots.get(slot_of(version, old_ring))
        if entry is not None and entry.version == version:
            moved[slot_of(version, head.ring)] = entry
    return moved


def _from_v2(snapshot: _CheckpointFile) -> dict[str, _KeyData]:
    keys: dict[str, _KeyData] = {}
    for item in snapshot.keys:
        head = decode_head(item.head)
        slots = {slot_of(v, head.ring): _Entry(v, et, src, payload) for v, et, src, payload in item.records}
        keys[item.key] = _KeyData(head, slots, dict(item.sides))
    return keys


def _from_v1(snapshot: _CheckpointFileV1) -> dict[str, _KeyData]:
    """Keys of a format-1 checkpoint (every retained record, a watermark; deleted keys' counters) converted."""
    keys: dict[str, _KeyData] = {}
    for item in snapshot.keys:
        if not item.records:
            raise KeyError(f"no versions for key {item.key!r}")
        records = sorted(item.records)
        oldest, latest = records[0][0], records[-1][0]
        head = Head(latest, oldest, item.max_event_time, tuple(et for _, et, _, _ in records), {}, 0)
        keys[item.key] = _KeyData(head, {v: _Entry(v, et, src, p) for v, et, src, p in records}, {})
    for key, last in snapshot.deleted.items():
        keys[key] = _KeyData(deleted_head(last), {}, {})
    return keys
