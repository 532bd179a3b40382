"""`MemoryVersionedStore`: the dict-based versioned store for unit tests and the testing harness.

Values are stored encoded (through the store's codec) so that reads return fresh objects, exactly
like the persistent backends, and so that codec problems surface in unit tests too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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

T = TypeVar("T")

#: Version of the memory checkpoint file layout.
MEMORY_CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE = "memory-store.msgpack"


class _Entry(NamedTuple):
    event_time: int
    source: SourceCoordinates | None
    payload: bytes


@dataclass(slots=True)
class _KeyData:
    records: dict[int, _Entry]
    oldest: int
    latest: int
    max_event_time: int

    def copy(self) -> _KeyData:
        return _KeyData(dict(self.records), self.oldest, self.latest, self.max_event_time)


class _CheckpointHeader(msgspec.Struct):
    format: int
    codec: str


class _CheckpointKey(msgspec.Struct, array_like=True):
    key: str
    max_event_time: int
    # (version, event_time, source, payload), oldest first
    records: list[tuple[int, int, SourceCoordinates | None, bytes]]


class _CheckpointFile(msgspec.Struct):
    format: int
    codec: str
    keys: list[_CheckpointKey]
    deleted: dict[str, int]


class MemoryVersionedStore(Generic[T]):
    """An in-memory `VersionedStore` (dicts of versions per key); nothing survives the process.

    `codec` encodes values (default `MsgpackCodec()`, plain Python values); `retention` is applied on
    every put (default `DEFAULT_RETENTION`). `as_of_time` scans the key's retained versions from newest
    down (fine for tests). `write_batch` keeps an undo copy of each key it touches. Not thread-safe.
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
        self._max_versions = retention.max_versions
        self._horizon_ms = retention.horizon_ms
        self._keys: dict[str, _KeyData] = {}
        self._deleted: dict[str, int] = {}
        self._undo: dict[str, tuple[_KeyData | None, int | None]] | None = None
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
        return iter(list(self._keys))

    def delete(self, key: str) -> None:
        """Remove every version of `key`; its version counter is kept."""
        self._check_open()
        check_key(key)
        data = self._keys.get(key)
        if data is None:
            return
        self._touch(key)
        self._deleted[key] = data.latest
        del self._keys[key]

    def forget(self, key: str) -> None:
        """Remove every version of `key` and its version counter: its next put is version 1, as for a key that
        never had state (what expiry does)."""
        self._check_open()
        check_key(key)
        if key not in self._keys and key not in self._deleted:
            return
        self._touch(key)
        self._keys.pop(key, None)
        self._deleted.pop(key, None)

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
                self._rollback(undo)

    def _rollback(self, undo: dict[str, tuple[_KeyData | None, int | None]]) -> None:
        for key, (data, deleted_version) in undo.items():
            if data is None:
                self._keys.pop(key, None)
            else:
                self._keys[key] = data
            if deleted_version is None:
                self._deleted.pop(key, None)
            else:
                self._deleted[key] = deleted_version

    def _touch(self, key: str) -> None:
        if self._undo is not None and key not in self._undo:
            data = self._keys.get(key)
            self._undo[key] = (data.copy() if data is not None else None, self._deleted.get(key))

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write all committed state to a new directory `path` (refused inside a write batch)."""
        self._check_open()
        if self._undo is not None:
            raise StateError("checkpoint() inside write_batch(): commit the batch first, then checkpoint")
        target = Path(path)
        if target.exists():
            raise StateError(f"checkpoint target {target} already exists; checkpoints need a new directory")
        snapshot = _CheckpointFile(
            format=MEMORY_CHECKPOINT_FORMAT,
            codec=self._codec.format_id,
            keys=[
                _CheckpointKey(
                    key,
                    data.max_event_time,
                    [(v, e.event_time, e.source, e.payload) for v, e in sorted(data.records.items())],
                )
                for key, data in self._keys.items()
            ],
            deleted=dict(self._deleted),
        )
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
        """A new store holding the state of the checkpoint directory `path`.

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
        if header.format != MEMORY_CHECKPOINT_FORMAT:
            raise IncompatibleStateError(
                str(file), found=f"memory checkpoint format {header.format}",
                expected=f"format {MEMORY_CHECKPOINT_FORMAT}",
                remedy="Run `streamscore state migrate` on it, or rebuild state from the event log",
            )
        if header.codec != store._codec.format_id:
            raise IncompatibleStateError(
                str(file), found=f"values encoded with codec {header.codec!r}",
                expected=f"codec {store._codec.format_id!r}",
                remedy="Restore with the codec it was written with, or rebuild state from the event log",
            )
        try:
            snapshot = msgspec.msgpack.decode(raw, type=_CheckpointFile)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateError(f"memory-store checkpoint {file} is damaged: {exc}") from exc
        for item in snapshot.keys:
            if not item.records:
                raise StateError(f"memory-store checkpoint {file} has no versions for key {item.key!r}")
            records = {v: _Entry(et, src, payload) for v, et, src, payload in item.records}
            store._keys[item.key] = _KeyData(records, min(records), max(records), item.max_event_time)
        store._deleted = dict(snapshot.deleted)
        return store

    def close(self) -> None:
        """Drop all state; later operations raise `StoreClosedError`."""
        self._closed = True
        self._keys.clear()
        self._deleted.clear()

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
        if data is None:
            return None
        latest = data.latest
        entry = data.records[latest]
        try:
            value = self._codec.decode(entry.payload)
        except StateDecodeError as exc:
            raise CorruptStateError(key, latest, str(exc)) from exc
        return StateVersion(latest, entry.event_time, value, entry.source)

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
        entry = _Entry(event_time, source, payload)
        if data is None:
            version = self._deleted.pop(key, 0) + 1
            self._keys[key] = _KeyData({version: entry}, version, version, event_time)
            return version
        version = data.latest + 1
        records = data.records
        records[version] = entry
        data.latest = version
        if event_time > data.max_event_time:
            data.max_event_time = event_time
        cut = version - self._max_versions + 1 if self._max_versions is not None else 1
        floor = data.max_event_time - self._horizon_ms if self._horizon_ms is not None else None
        oldest = data.oldest
        while oldest < version and (oldest < cut or (floor is not None and records[oldest].event_time < floor)):
            del records[oldest]
            oldest += 1
        data.oldest = oldest
        return version

    def as_of(self, key: str, version: int) -> StateVersion[T] | None:
        """`key` exactly at `version`, or None."""
        self._check_open()
        data = self._keys.get(key)
        if data is None:
            return None
        entry = data.records.get(version)
        return None if entry is None else self._version(key, version, entry)

    def as_of_time(self, key: str, event_time: int) -> StateVersion[T] | None:
        """The highest retained version of `key` with event time <= `event_time`, or None."""
        self._check_open()
        check_event_time(event_time)
        data = self._keys.get(key)
        if data is None:
            return None
        for version in range(data.latest, data.oldest - 1, -1):
            entry = data.records[version]
            if entry.event_time <= event_time:
                return self._version(key, version, entry)
        return None

    def history(self, key: str, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of `key`, newest first."""
        self._check_open()
        check_limit(limit)
        data = self._keys.get(key)
        if data is None:
            return []
        stop = max(data.oldest, data.latest - limit + 1)
        return [self._version(key, v, data.records[v]) for v in range(data.latest, stop - 1, -1)]

    # -- helpers -----------------------------------------------------------------------------------

    def _version(self, key: str, version: int, entry: _Entry) -> StateVersion[T]:
        try:
            value = self._codec.decode(entry.payload)
        except StateDecodeError as exc:
            raise CorruptStateError(key, version, str(exc)) from exc
        return StateVersion(version, entry.event_time, value, entry.source)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("MemoryVersionedStore is closed")
