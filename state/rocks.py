"""`RocksVersionedStore`: the persistent versioned store on RocksDB (rocksdict, raw bytes mode), layout 2.

Key layout (all keys raw bytes; `K` is the UTF-8 state key, which never contains NUL, so every per-key range
below is prefix-free; integers big-endian). The per-key layout is `state.layout`'s:

    \\x00meta/format                 store format record: msgpack {format, codec, legacy}
    \\x00meta/runtime/<name>          the runtime's own entries (`put_meta`), e.g. applied Kafka offsets
    \\x03 K                          head (`state.layout.Head`): version range, ring, event times, inline sides
    \\x05 K \\x00 >Q slot              record of the version in that slot (written once per version)
    \\x06 K \\x00 name                 a separate side entry

* A put writes its record into its slot and marks the key's head dirty; heads and side entries are written
  once per dirty key when the batch commits (one RocksDB WriteBatch). Nothing is read on the write path
  when the key's head is cached.
* A bounded write-through cache of decoded heads (with the latest record's bytes and the side entries read
  or written) serves `get` without a read; a batch's changes reach it only when the batch commits, so a
  failed batch leaves it as valid as the committed data. Only this instance writes the directory.
* Reads inside `write_batch()` see the batch's own writes.

Stores written by layout 1 (format 1, before 2026-12-06: the latest record inside the head, older records
under \\x01, an event-time index under \\x02, counters of deleted keys under \\x04) open as they are: each key is
converted to layout 2 the first time it is read or written (`state._legacy`), so no long migration runs at
start; `convert_all()` converts every remaining key at once.

Single-process, single-writer; not thread-safe. `read_only=True` opens for inspection (no writes, no lock;
legacy keys are converted in memory only).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import msgspec
from rocksdict import Checkpoint, Rdict, WriteOptions

from state._handle import KeyState
from state._rocks_keys import (
    HEAD,
    LEGACY_TOMBSTONE,
    META_KEY,
    RUNTIME_META,
    KeyCache,
    Pending,
    convert_legacy_key,
    open_rdict,
    side_key,
    slot_key,
)
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
    ReadOnlyStoreError,
    StateDecodeError,
    StateError,
    StoreClosedError,
)
from state.layout import (
    Head,
    HeadFormatMismatch,
    LayoutError,
    as_of_time_version,
    check_side_name,
    decode_head,
    decode_record,
    deleted_head,
    encode_record,
    plan_put,
    record_version,
    slot_of,
    with_inline,
)

T = TypeVar("T")

#: Version of the store layout above; stored at `META_KEY` and checked on open (1 is converted per key).
ROCKS_FORMAT = 2
_U64 = struct.Struct(">Q")
_REMEDY_NEWER = (
    "It was written by a newer streamscore: open it with that version, or point --state-dir at an empty folder "
    "to rebuild state from the event log"
)


class _Meta(msgspec.Struct, omit_defaults=True):
    format: int
    codec: str
    #: Keys written by layout 1 may remain (converted on first touch).
    legacy: bool = False


class RocksVersionedStore(Generic[T]):
    """A persistent `VersionedStore` in a RocksDB directory (see the module docstring for the layout).

    `path`: the state directory (created if missing, unless `read_only`). `codec`: value codec (default
    `MsgpackCodec()`); its `format_id` is recorded and must match on reopen. `retention`: applied on every
    put (a changed `max_versions` re-slots each key at its next put). `read_only`: open for inspection.
    `sync_writes`: fsync the WAL on every commit (survives power loss; without it commits survive a process
    crash). `block_cache_bytes` and `write_buffer_bytes` size RocksDB's read cache and memtable;
    `cache_keys` and `cache_bytes` bound the cache of decoded heads.

    Raises `IncompatibleStateError` if the directory holds data of another format or codec,
    `StateStoreLockedError` if another writer has it open, `StateError` if it cannot be opened.
    """

    @overload
    def __init__(
        self: RocksVersionedStore[Any], path: str | os.PathLike[str], codec: None = None, *,
        retention: RetentionPolicy = DEFAULT_RETENTION, read_only: bool = False, sync_writes: bool = False,
        block_cache_bytes: int = 64 << 20, write_buffer_bytes: int = 64 << 20, cache_keys: int = 100_000,
        cache_bytes: int = 64 << 20,
    ) -> None: ...

    @overload
    def __init__(
        self, path: str | os.PathLike[str], codec: Codec[T], *, retention: RetentionPolicy = DEFAULT_RETENTION,
        read_only: bool = False, sync_writes: bool = False, block_cache_bytes: int = 64 << 20,
        write_buffer_bytes: int = 64 << 20, cache_keys: int = 100_000, cache_bytes: int = 64 << 20,
    ) -> None: ...

    def __init__(
        self, path: str | os.PathLike[str], codec: Codec[Any] | None = None, *,
        retention: RetentionPolicy = DEFAULT_RETENTION, read_only: bool = False, sync_writes: bool = False,
        block_cache_bytes: int = 64 << 20, write_buffer_bytes: int = 64 << 20, cache_keys: int = 100_000,
        cache_bytes: int = 64 << 20,
    ) -> None:
        self._path = Path(path)
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        self._ring = retention.max_versions or 0
        self._read_only = read_only
        self._pending: Pending | None = None
        self._cache = KeyCache(cache_keys, cache_bytes)
        self._legacy = False
        #: The record bytes the latest `put` wrote (what a changelog publishes), or None.
        self.last_record: bytes | None = None
        self._closed = True
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        self._db: Rdict = open_rdict(self._path, read_only, block_cache_bytes, write_buffer_bytes)
        self._closed = False
        try:
            self._check_format()
        except StateError:
            self.close()
            raise

    def _check_format(self) -> None:
        raw = self._db.get(META_KEY)
        expected = f"streamscore rocks format {ROCKS_FORMAT} with codec {self._codec.format_id!r}"
        if raw is None:
            it = self._db.iter()
            it.seek_to_first()
            if it.valid():
                raise IncompatibleStateError(
                    str(self._path), found="a RocksDB database without a streamscore format record",
                    expected=expected,
                    remedy="Point --state-dir at an empty folder to rebuild state from the event log",
                )
            if not self._read_only:
                self._write_meta(_Meta(format=ROCKS_FORMAT, codec=self._codec.format_id))
            return
        try:
            meta = msgspec.msgpack.decode(raw, type=_Meta)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IncompatibleStateError(
                str(self._path), found=f"an unreadable format record {bytes(raw)[:32]!r}", expected=expected,
                remedy="Point --state-dir at an empty folder to rebuild state from the event log",
            ) from exc
        if meta.format not in (1, ROCKS_FORMAT) or meta.codec != self._codec.format_id:
            raise IncompatibleStateError(
                str(self._path), found=f"streamscore rocks format {meta.format} with codec {meta.codec!r}",
                expected=expected + " (format 1 is converted)",
                remedy=_REMEDY_NEWER if meta.format > ROCKS_FORMAT else
                "Open it with the codec it was written with, or point --state-dir at an empty folder",
            )
        self._legacy = meta.format == 1 or meta.legacy
        if meta.format == 1 and not self._read_only:
            self._write_meta(_Meta(format=ROCKS_FORMAT, codec=self._codec.format_id, legacy=True))

    def _write_meta(self, meta: _Meta) -> None:
        options = WriteOptions()
        options.sync = True
        self._db.put(META_KEY, msgspec.msgpack.encode(meta), options)

    # -- store API -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The state directory."""
        return self._path

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        return self._retention

    @property
    def codec(self) -> Codec[T]:
        """The codec values are stored with."""
        return self._codec

    @property
    def read_only(self) -> bool:
        """True if opened for inspection only."""
        return self._read_only

    def key(self, key: str) -> KeyState[T]:
        """The versioned state of `key`."""
        check_key(key)
        return KeyState(self, key)

    def keys(self) -> Iterator[str]:
        """The keys that currently have state, in UTF-8 byte order (a snapshot taken when called)."""
        self._check_open()
        return iter([key for key, _ in self._heads(None, None)])

    def scan_heads(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` keys with state that sort after `after` (from the first key when None), each with the
        event time of its latest version: one step of a sweep over the whole store."""
        self._check_open()
        return [(key, head.latest_event_time) for key, head in self._heads(after, limit)]

    def delete(self, key: str) -> None:
        """Remove every version and side entry of `key`; its version counter is kept."""
        kb = self._check_write(key)
        with self._batch() as pending:
            head = self._head(key, kb)
            if head is None:
                return
            entry = pending.wipe(kb, self._legacy)
            entry.head = deleted_head(head.latest) if head.latest else None

    def forget(self, key: str) -> None:
        """Remove every version, side entry and the version counter of `key`: its next put is version 1, as for
        a key that never had state (what expiry does; nothing of the key stays on disk)."""
        kb = self._check_write(key)
        with self._batch() as pending:
            pending.wipe(kb, self._legacy).head = None

    def put_meta(self, name: str, value: bytes) -> None:
        """Store the runtime entry `name` (e.g. the last applied offset of a partition). Inside `write_batch()`
        it commits atomically with the state written there: a crash keeps both or neither."""
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is read-only; put_meta() is not allowed")
        with self._batch() as pending:
            pending.meta[RUNTIME_META + name.encode("utf-8")] = value

    def get_meta(self, name: str) -> bytes | None:
        """The runtime entry `name` (as committed, or as written earlier in the current batch), or None."""
        self._check_open()
        raw_key = RUNTIME_META + name.encode("utf-8")
        if self._pending is not None and raw_key in self._pending.meta:
            return self._pending.meta[raw_key]
        value: bytes | None = self._db.get(raw_key)
        return value

    def write_batch(self) -> AbstractContextManager[None]:
        """A context in which puts, side entries and deletes commit as one atomic RocksDB write batch.

        Reads inside the block see its writes; if the block raises, nothing is written. Nested batches join
        the outermost one.
        """
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is read-only; write_batch() is not allowed")
        return self._outer_batch()

    @contextmanager
    def _outer_batch(self) -> Iterator[None]:
        with self._batch():
            yield

    @contextmanager
    def _batch(self) -> Iterator[Pending]:
        if self._pending is not None:
            yield self._pending
            return
        pending = self._pending = Pending()
        try:
            yield pending
        finally:
            self._pending = None
        self._commit(pending)

    def pending_sides(self) -> list[tuple[str, str, bytes | None, bool]]:
        """The side entries the open batch changed since the previous call (all of them on the first), once per
        (key, name) as the batch leaves them: (key, name, value or None for removed, inline). What a changelog
        publishes for the batch, or for each of the steps a batch held open over several steps took."""
        if self._pending is None:
            return []
        return [(kb.decode("utf-8"), name, value, inline) for kb, name, value, inline in self._pending.side_changes()]

    def begin_batch(self) -> None:
        """Open a write batch that stays open across calls (and awaits) until `commit_batch` or `discard_batch`:
        what `write_batch()` is for one block. Reads see its writes. Refused while a batch is open."""
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is read-only; begin_batch() is not allowed")
        if self._pending is not None:
            raise StateError(f"begin_batch() on {self._path}: a write batch is already open")
        self._pending = Pending()

    @property
    def in_batch(self) -> bool:
        """Whether a write batch is open."""
        return self._pending is not None

    def commit_batch(self) -> None:
        """Write the batch opened by `begin_batch` (one atomic RocksDB write) and close it."""
        pending = self._pending
        if pending is None:
            raise StateError(f"commit_batch() on {self._path}: no write batch is open")
        self._pending = None
        self._commit(pending)

    def discard_batch(self) -> None:
        """Drop the open write batch (if any) without writing it; the cache stays as the committed data."""
        self._pending = None

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write a consistent copy of the committed state to the new directory `path` (RocksDB checkpoint).

        Refused inside a write batch. The copy opens with `RocksVersionedStore(path)` (or `restore`).
        """
        self._check_open()
        if self._pending is not None:
            raise StateError("checkpoint() inside write_batch(): commit the batch first, then checkpoint")
        target = Path(path)
        if target.exists():
            raise StateError(f"checkpoint target {target} already exists; checkpoints need a new directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            Checkpoint(self._db).create_checkpoint(str(target))
        except Exception as exc:  # rocksdict raises plain Exception; re-raised with context, not hidden
            raise StateError(f"cannot create a checkpoint of {self._path} at {target}: {exc}") from exc

    @overload
    @classmethod
    def restore(
        cls, checkpoint: str | os.PathLike[str], path: str | os.PathLike[str], codec: None = None,
        *, retention: RetentionPolicy = DEFAULT_RETENTION, sync_writes: bool = False,
    ) -> RocksVersionedStore[Any]: ...

    @overload
    @classmethod
    def restore(
        cls, checkpoint: str | os.PathLike[str], path: str | os.PathLike[str], codec: Codec[T],
        *, retention: RetentionPolicy = DEFAULT_RETENTION, sync_writes: bool = False,
    ) -> RocksVersionedStore[T]: ...

    @classmethod
    def restore(
        cls, checkpoint: str | os.PathLike[str], path: str | os.PathLike[str], codec: Codec[Any] | None = None,
        *, retention: RetentionPolicy = DEFAULT_RETENTION, sync_writes: bool = False,
    ) -> RocksVersionedStore[Any]:
        """A store at the new directory `path` holding a copy of `checkpoint` (which stays untouched).

        Raises `IncompatibleStateError` if the checkpoint has another format or codec.
        """
        source, target = Path(checkpoint), Path(path)
        if not (source / "CURRENT").is_file():
            raise StateError(f"{source} is not a RocksDB checkpoint (no CURRENT file)")
        if target.exists() and any(target.iterdir()):
            raise StateError(f"cannot restore into {target}: the directory is not empty")
        if target.exists():
            target.rmdir()
        shutil.copytree(source, target)
        return cls(target, codec, retention=retention, sync_writes=sync_writes)

    def convert_all(self) -> int:
        """Convert every key still in layout 1 now (otherwise each converts when first touched); returns how
        many were converted."""
        self._check_open()
        if self._read_only or not self._legacy:
            return 0
        converted = 0
        names = [k[len(HEAD):] for k, v in self._iter(HEAD, HEAD[:-1] + bytes([HEAD[-1] + 1])) if v[:1] == b"\x01"]
        names += [k[len(LEGACY_TOMBSTONE):] for k, _ in self._iter(LEGACY_TOMBSTONE, bytes([LEGACY_TOMBSTONE[0] + 1]))]
        for kb in names:
            with self._batch():
                self._head(kb.decode("utf-8"), kb)
            converted += 1
        self._legacy = False
        self._write_meta(_Meta(format=ROCKS_FORMAT, codec=self._codec.format_id))
        return converted

    def verify(self) -> int:
        """Read every entry of the database once (RocksDB checks each block's checksum on the way) and return how
        many there are. Raises `StateError` naming the folder when a file is damaged: a store that opened may
        still hold a garbled SST block, which only a read finds."""
        self._check_open()
        entries = 0
        it = self._db.iter()
        try:
            it.seek_to_first()
            while it.valid():
                it.value()
                entries += 1
                it.next()
            it.status()  # an iterator stops at a damaged block; its status says why
        except Exception as exc:  # rocksdict raises plain Exception; re-raised with the folder, not hidden
            raise StateError(f"RocksDB state directory {self._path} is damaged ({exc})") from exc
        return entries

    def flush(self) -> None:
        """Flush memtables to SST files (e.g. before measuring disk usage); commits are durable anyway."""
        self._check_open()
        self._db.flush()

    def close(self) -> None:
        """Close the database (idempotent). An open write batch is discarded."""
        if self._closed:
            return
        self._closed = True
        self._pending = None
        self._cache.clear()
        self._db.close()

    def __enter__(self) -> RocksVersionedStore[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self._read_only else "read-write"
        return f"RocksVersionedStore({str(self._path)!r}, {mode}, retention={self._retention})"

    # -- key-addressed operations (what `KeyState` calls) ------------------------------------------

    def get(self, key: str) -> StateVersion[T] | None:
        """The latest version of `key`, or None."""
        self._check_open()
        kb = check_key(key)
        head = self._head(key, kb)
        if head is None or head.deleted:
            return None
        return self._decode(key, head.latest, self._latest_record(key, kb, head))

    def put(self, key: str, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version of `key`; returns its version number."""
        return self.put_encoded(key, self._codec.encode(value), event_time=event_time, source=source)

    def put_encoded(self, key: str, payload: bytes, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """`put` of a value already encoded by this store's codec (e.g. from a changelog); returns its version."""
        kb = self._check_write(key)
        if type(event_time) is not int or not MIN_EVENT_TIME <= event_time <= MAX_EVENT_TIME:
            check_event_time(event_time)
        with self._batch() as pending:
            head = self._head(key, kb)
            plan = plan_put(head, event_time, self._retention)
            record = encode_record(plan.version, event_time, source, payload)
            entry = pending.entry(kb, head, self._cache)
            if plan.reslot is not None and head is not None:
                self._reslot(key, kb, head, plan.reslot, plan.head)
            elif not self._ring and head is not None and not head.deleted:
                for version in plan.pruned:
                    pending.delete_slot(kb, version)
            pending.put_slot(kb, plan.slot, record)
            entry.head = plan.head
            entry.latest = record
        self.last_record = record
        return plan.version

    def as_of(self, key: str, version: int) -> StateVersion[T] | None:
        """`key` exactly at `version`, or None."""
        self._check_open()
        kb = check_key(key)
        head = self._head(key, kb)
        if head is None or head.deleted or not head.oldest <= version <= head.latest:
            return None
        return self._decode(key, version, self._record(key, kb, head, version))

    def as_of_time(self, key: str, event_time: int) -> StateVersion[T] | None:
        """The highest retained version of `key` with event time <= `event_time`, or None."""
        self._check_open()
        check_event_time(event_time)
        kb = check_key(key)
        head = self._head(key, kb)
        if head is None or head.deleted:
            return None
        version = as_of_time_version(head, event_time)
        return None if version is None else self._decode(key, version, self._record(key, kb, head, version))

    def history(self, key: str, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of `key`, newest first."""
        self._check_open()
        check_limit(limit)
        kb = check_key(key)
        head = self._head(key, kb)
        if head is None or head.deleted or limit == 0:
            return []
        versions = list(range(head.latest, max(head.oldest, head.latest - limit + 1) - 1, -1))
        return [self._decode(key, v, self._record(key, kb, head, v)) for v in versions]

    def side(self, key: str, name: str) -> bytes | None:
        """The side entry `name` of `key`, or None."""
        self._check_open()
        kb = check_key(key)
        head = self._head(key, kb)
        if head is not None and name in head.inline:
            return head.inline[name]
        pending = self._pending
        if pending is not None:
            found, value = pending.side(kb, name)
            if found:
                return value
        cached = self._cache.get(kb)
        if cached is not None and name in cached.sides:
            return cached.sides[name]
        value = self._db.get(side_key(kb, name)) if head is not None else None
        if cached is not None:
            self._cache.remember_side(kb, cached, name, value)
        return value

    def put_side(self, key: str, name: str, value: bytes | None, *, inline: bool = False) -> None:
        """Set the side entry `name` of `key` (None removes it); `inline` keeps it in the key's head."""
        kb = self._check_write(key)
        check_side_name(name)
        with self._batch() as pending:
            head = self._head(key, kb)
            if head is None:
                if value is None:
                    return
                head = deleted_head(0)
            entry = pending.entry(kb, head, self._cache)
            if inline or name in head.inline:
                head = with_inline(head, name, value if inline else None)
            entry.head = head  # a key with side entries only keeps a head without versions
            pending.set_side(kb, name, None if inline else value, inline)

    # -- reads through the pending batch and the cache -------------------------------------------------

    def _head(self, key: str, kb: bytes) -> Head | None:
        """The key's head (None: no head at all), from the batch, the cache or RocksDB (converting layout 1)."""
        pending = self._pending
        if pending is not None:
            entry = pending.keys.get(kb)
            if entry is not None:
                return entry.head
        cached = self._cache.get(kb)
        if cached is not None:
            return cached.head
        raw = self._db.get(HEAD + kb)
        head: Head | None = None
        if raw is not None:
            try:
                head = decode_head(raw)
            except HeadFormatMismatch as exc:
                if exc.found != 1 or not self._legacy:
                    raise CorruptStateError(key, None, str(exc)) from exc
                return self._convert(key, kb, raw)
            except LayoutError as exc:
                raise CorruptStateError(key, None, str(exc)) from exc
        elif self._legacy and self._db.get(LEGACY_TOMBSTONE + kb) is not None:
            return self._convert(key, kb, None)
        if pending is None or kb not in pending.keys:
            self._cache.put(kb, head, None)
        return head

    def _convert(self, key: str, kb: bytes, raw_head: bytes | None) -> Head | None:
        try:
            converted = convert_legacy_key(self._db, kb, raw_head, self._ring)
        except (LayoutError, ValueError) as exc:
            raise CorruptStateError(key, None, f"layout-1 state cannot be converted: {exc}") from exc
        if self._read_only:
            self._cache.put(kb, converted.head, converted.latest, slots=converted.slots)
            return converted.head
        with self._batch() as pending:
            entry = pending.wipe(kb, legacy=True)
            entry.head = converted.head
            entry.latest = converted.latest
            for slot, record in converted.slots.items():
                pending.put_slot(kb, slot, record)
        return converted.head

    def _latest_record(self, key: str, kb: bytes, head: Head) -> bytes:
        pending = self._pending
        if pending is not None:
            entry = pending.keys.get(kb)
            if entry is not None and entry.latest is not None:
                return entry.latest
        cached = self._cache.get(kb)
        if cached is not None and cached.latest is not None:
            return cached.latest
        record = self._record(key, kb, head, head.latest)
        if cached is not None and (pending is None or kb not in pending.keys):
            self._cache.remember_latest(kb, cached, record)
        return record

    def _record(self, key: str, kb: bytes, head: Head, version: int) -> bytes:
        slot = slot_of(version, head.ring)
        raw: bytes | None = None
        pending = self._pending
        found = False
        if pending is not None:
            found, raw = pending.slot(kb, slot)
        if not found:
            cached = self._cache.get(kb)
            if cached is not None and cached.slots is not None and slot in cached.slots:
                raw = cached.slots[slot]
            else:
                raw = self._db.get(slot_key(kb, slot))
        if raw is None:
            raise CorruptStateError(key, version, f"record missing although versions {head.oldest}..{head.latest} "
                                                  "are retained")
        try:
            stored = record_version(raw)
        except LayoutError as exc:
            raise CorruptStateError(key, version, str(exc)) from exc
        if stored != version:
            raise CorruptStateError(key, version, f"its slot holds version {stored}")
        return raw

    def _reslot(self, key: str, kb: bytes, head: Head, old_ring: int, new_head: Head) -> None:
        """Move the retained older records of `new_head` from the slots of `old_ring` to those of its ring."""
        assert self._pending is not None
        records = {v: self._record(key, kb, head, v) for v in range(new_head.oldest, new_head.latest)}
        for slot in range(head.oldest, head.latest + 1):
            self._pending.delete_slot(kb, slot_of(slot, old_ring))
        for version, record in records.items():
            self._pending.put_slot(kb, slot_of(version, new_head.ring), record)

    def _heads(self, after: str | None, limit: int | None) -> list[tuple[str, Head]]:
        """(key, head) of keys with versions after `after`, in key order, the batch's changes merged in."""
        start = HEAD if after is None else HEAD + after.encode("utf-8") + b"\x00"
        stop = bytes([HEAD[0] + 1])
        pending = self._pending
        found: list[tuple[bytes, Head | None]] = []
        truncated = False
        for raw_key, raw in self._iter(start, stop):
            kb = raw_key[len(HEAD):]
            if limit is not None and len(found) >= limit:
                truncated = True
                break
            if pending is not None and kb in pending.keys:
                continue
            found.append((kb, self._head(kb.decode("utf-8"), kb) if raw[:1] != bytes([2]) else _decode(kb, raw)))
        if pending is not None:
            low = start[len(HEAD):]
            last = found[-1][0] if truncated and found else None
            for kb, entry in pending.keys.items():
                if kb >= low and (last is None or kb <= last):
                    found.append((kb, entry.head))
            found.sort(key=lambda item: item[0])
        live = [(kb.decode("utf-8"), head) for kb, head in found if head is not None and not head.deleted]
        return live if limit is None else live[:limit]

    def _iter(self, lo: bytes, hi: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(lo)
        while it.valid():
            key: bytes = it.key()
            if key >= hi:
                return
            yield key, it.value()
            it.next()

    # -- helpers -----------------------------------------------------------------------------------

    def _commit(self, pending: Pending) -> None:
        batch = pending.finish(self._cache)
        if len(batch):
            self._db.write(batch, self._write_options)

    def _decode(self, key: str, version: int, raw: bytes) -> StateVersion[T]:
        try:
            record = decode_record(raw)
            value = self._codec.decode(record.payload)
        except (LayoutError, StateDecodeError) as exc:
            raise CorruptStateError(key, version, str(exc)) from exc
        return StateVersion(version, record.event_time, value, record.source)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"RocksVersionedStore at {self._path} is closed")

    def _check_write(self, key: str) -> bytes:
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is opened read-only; writes are not allowed")
        return check_key(key)


def _decode(kb: bytes, raw: bytes) -> Head:
    try:
        return decode_head(raw)
    except LayoutError as exc:
        raise CorruptStateError(kb.decode("utf-8"), None, str(exc)) from exc


__all__ = ["META_KEY", "ROCKS_FORMAT", "RocksVersionedStore"]
