"""`RocksVersionedStore`: the persistent versioned store on RocksDB (rocksdict, raw bytes mode).

Key layout (all keys raw bytes; `K` is the UTF-8 state key, which never contains NUL, so every
per-key range below is prefix-free; integers are big-endian):

    \\x00meta/format                    store format record: msgpack {format, codec}
    \\x03 K                             head: latest version + its record, retained range
                                       [oldest, latest], event time of latest/oldest, watermark
    \\x01 K \\x00 (2^64-1-version)        record of a superseded version (newest sorts first)
    \\x02 K \\x00 (event_time+2^63) version  event-time index (empty value), see below
    \\x04 K                             last version of a deleted key (versions are never reused)

* `get` is one point read (the head carries the latest record); `as_of(v)` is the head plus one point
  read; `history(n)` the head plus one multi-get.
* `as_of_time(t)` returns the latest version at once when `t` >= its event time (the in-order case);
  otherwise it is one `seek_for_prev` in the event-time index. The index holds a *staircase*: only
  versions not dominated by a newer version with an earlier-or-equal event time, so both event time
  and version increase along it and "highest version with event_time <= t" is the last index entry
  at or before `t`. A put removes the entries it dominates (those with event time >= its own; none
  when events arrive in order), so each index entry is written once and deleted at most once.
* Retention removes the oldest versions by point deletes, reading one record per pruned version.
* Every put/delete is one `WriteBatch` (a steady-state put with retention writes ~5 entries: head,
  previous version's record, index entry, and deletes of the pruned record and index entry);
  `write_batch()` gathers many into one, committed atomically. A `put` right after a `get` of the
  same key reuses the head that `get` read (one-entry cache, outside batches).

Single-process, single-writer; not thread-safe. `read_only=True` opens for inspection (no writes, and
no lock held, so it can run next to a live writer and sees its state as of open).
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
from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    Checkpoint,
    DBCompressionType,
    Options,
    Rdict,
    WriteOptions,
)

from state._handle import KeyState
from state._pending import PendingWrites
from state._legacy import (
    Head,
    HeadFormatMismatch,
    RecordFormatError,
    decode_head,
    decode_record,
    deleted_head,
    encode_head,
    encode_record,
    plan_put,
    record_event_time,
)
from state.codec import Codec, MsgpackCodec
from state.contract import (
    DEFAULT_RETENTION,
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
    StateStoreLockedError,
    StoreClosedError,
)

T = TypeVar("T")

#: Version of the key layout above; stored at `META_KEY` and checked on open.
ROCKS_FORMAT = 1
META_KEY = b"\x00meta/format"
#: Prefix of the runtime's own entries (`put_meta`), e.g. the last applied Kafka offset of a partition.
_RUNTIME_META = b"\x00meta/runtime/"

_RECORD = b"\x01"
_INDEX = b"\x02"
_HEAD = b"\x03"
_TOMBSTONE = b"\x04"
_U64 = struct.Struct(">Q")
_U64_PAIR = struct.Struct(">QQ")
_MAX_U64 = 2**64 - 1
_SEP = b"\x00"
_END = b"\x01"

_REMEDY = (
    "Run `streamscore state migrate` on this directory, or point --state-dir at an empty folder "
    "to rebuild state from the event log"
)


class _Meta(msgspec.Struct):
    format: int
    codec: str


def _record_key(kb: bytes, version: int) -> bytes:
    return _RECORD + kb + _SEP + _U64.pack(_MAX_U64 - version)


def _index_key(kb: bytes, event_time: int, version: int) -> bytes:
    return _INDEX + kb + _SEP + _U64_PAIR.pack(event_time - MIN_EVENT_TIME, version)


def _range(prefix: bytes, kb: bytes) -> tuple[bytes, bytes]:
    return prefix + kb + _SEP, prefix + kb + _END


def _options(cache: Cache, write_buffer_bytes: int, *, create: bool) -> Options:
    """RocksDB options for one writer: bloom filters for point reads, lz4, a shared block cache.

    Index and filter blocks stay in the table readers' memory (RocksDB's default): putting them in a
    sharded block cache makes large, unpartitioned index blocks miss on every read.
    """
    options = Options(raw_mode=True)
    options.create_if_missing(create)
    options.increase_parallelism(max(2, os.cpu_count() or 2))
    options.set_max_background_jobs(2)
    options.set_write_buffer_size(write_buffer_bytes)
    options.set_compression_type(DBCompressionType.lz4())
    options.set_keep_log_file_num(4)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    return options


class RocksVersionedStore(Generic[T]):
    """A persistent `VersionedStore` in a RocksDB directory (see the module docstring for the layout).

    `path`: the state directory (created if missing, unless `read_only`). `codec`: value codec (default
    `MsgpackCodec()`); its `format_id` is recorded and must match on reopen. `retention`: applied on
    every put. `read_only`: open for inspection. `sync_writes`: fsync the WAL on every commit (survives
    power loss; without it commits survive a process crash). `block_cache_bytes` and
    `write_buffer_bytes` size RocksDB's read cache and memtable.

    Raises `IncompatibleStateError` if the directory holds data of another format or codec,
    `StateStoreLockedError` if another writer has it open, `StateError` if it cannot be opened.
    """

    @overload
    def __init__(
        self: RocksVersionedStore[Any],
        path: str | os.PathLike[str],
        codec: None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
        read_only: bool = False,
        sync_writes: bool = False,
        block_cache_bytes: int = 64 << 20,
        write_buffer_bytes: int = 64 << 20,
    ) -> None: ...

    @overload
    def __init__(
        self,
        path: str | os.PathLike[str],
        codec: Codec[T],
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
        read_only: bool = False,
        sync_writes: bool = False,
        block_cache_bytes: int = 64 << 20,
        write_buffer_bytes: int = 64 << 20,
    ) -> None: ...

    def __init__(
        self,
        path: str | os.PathLike[str],
        codec: Codec[Any] | None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
        read_only: bool = False,
        sync_writes: bool = False,
        block_cache_bytes: int = 64 << 20,
        write_buffer_bytes: int = 64 << 20,
    ) -> None:
        self._path = Path(path)
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        self._read_only = read_only
        self._pending: PendingWrites | None = None
        # the head last read or written outside a batch (a get() followed by a put() of the same key
        # reads it once); valid because this instance is the only writer of the directory
        self._head_cache: tuple[bytes, Head] | None = None
        self._closed = True
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        self._db = self._open(block_cache_bytes, write_buffer_bytes)
        self._closed = False
        try:
            self._check_format()
        except StateError:
            self.close()
            raise

    def _open(self, block_cache_bytes: int, write_buffer_bytes: int) -> Rdict:
        if self._path.exists() and not self._path.is_dir():
            raise StateError(f"state directory {self._path} is a file; expected a directory")
        if self._read_only and not (self._path / "CURRENT").exists():
            raise StateError(f"no RocksDB state at {self._path} (nothing to open read-only)")
        cache = Cache(block_cache_bytes)
        options = _options(cache, write_buffer_bytes, create=not self._read_only)
        # rocksdict applies `options` to the default column family of an *existing* database only if
        # it is named here; otherwise that family is reopened with the options stored in the directory
        families = {"default": _options(cache, write_buffer_bytes, create=not self._read_only)}
        access = AccessType.read_only(False) if self._read_only else AccessType.read_write()
        try:
            return Rdict(str(self._path), options, column_families=families, access_type=access)
        except Exception as exc:  # rocksdict raises plain Exception; re-raised with context, not hidden
            message = str(exc)
            if "lock" in message.lower():
                raise StateStoreLockedError(
                    f"state directory {self._path} is already open for writing ({message}); only one "
                    "writer may open it: stop the other process, or open with read_only=True to inspect"
                ) from exc
            raise StateError(f"cannot open RocksDB state directory {self._path}: {message}") from exc

    def _check_format(self) -> None:
        raw = self._db.get(META_KEY)
        expected = f"streamscore rocks format {ROCKS_FORMAT} with codec {self._codec.format_id!r}"
        if raw is None:
            it = self._db.iter()
            it.seek_to_first()
            if it.valid():
                raise IncompatibleStateError(
                    str(self._path), found="a RocksDB database without a streamscore format record",
                    expected=expected, remedy=_REMEDY,
                )
            if not self._read_only:
                meta = _Meta(format=ROCKS_FORMAT, codec=self._codec.format_id)
                self._db.put(META_KEY, msgspec.msgpack.encode(meta), self._sync_options())
            return
        try:
            meta = msgspec.msgpack.decode(raw, type=_Meta)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IncompatibleStateError(
                str(self._path), found=f"an unreadable format record {bytes(raw)[:32]!r}", expected=expected,
                remedy=_REMEDY,
            ) from exc
        if meta.format != ROCKS_FORMAT or meta.codec != self._codec.format_id:
            raise IncompatibleStateError(
                str(self._path), found=f"streamscore rocks format {meta.format} with codec {meta.codec!r}",
                expected=expected, remedy=_REMEDY,
            )

    def _sync_options(self) -> WriteOptions:
        options = WriteOptions()
        options.sync = True
        return options

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
        """The keys that currently have state, in UTF-8 byte order (lazily, from a consistent view)."""
        self._check_open()
        return (k[len(_HEAD):].decode("utf-8") for k, _ in self._scan(_HEAD, _TOMBSTONE))

    def scan_heads(self, after: str | None, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` keys with state that sort after `after` (from the first key when None), each with the
        event time of its latest version: one step of a sweep over the whole store."""
        self._check_open()
        start = _HEAD if after is None else _HEAD + after.encode("utf-8") + b"\x00"
        found: list[tuple[str, int]] = []
        for raw_key, raw in self._scan(start, _TOMBSTONE):
            if len(found) >= limit:
                break
            key = raw_key[len(_HEAD):].decode("utf-8")
            try:
                head = decode_head(raw)
            except (RecordFormatError, HeadFormatMismatch) as exc:
                raise CorruptStateError(key, None, str(exc)) from exc
            if not head.deleted:
                found.append((key, head.latest_event_time))
        return found

    def delete(self, key: str) -> None:
        """Remove every version of `key`; its version counter is kept."""
        kb = self._check_write(key)
        head = self._read_head(key, kb)
        if head is None:
            return
        writes = self._writes()
        writes.delete(_HEAD + kb)
        writes.put(_TOMBSTONE + kb, _U64.pack(head.latest))
        writes.delete_range(*_range(_RECORD, kb))
        writes.delete_range(*_range(_INDEX, kb))
        self._commit(writes)
        self._head_cache = None

    def forget(self, key: str) -> None:
        """Remove every version of `key` and its version counter: its next put is version 1, as for a key that
        never had state (what expiry does; nothing of the key stays on disk)."""
        kb = self._check_write(key)
        writes = self._writes()
        writes.delete(_HEAD + kb)
        writes.delete(_TOMBSTONE + kb)
        writes.delete_range(*_range(_RECORD, kb))
        writes.delete_range(*_range(_INDEX, kb))
        self._commit(writes)
        self._head_cache = None

    def put_meta(self, name: str, value: bytes) -> None:
        """Store the runtime entry `name` (e.g. the last applied offset of a partition). Inside `write_batch()`
        it commits atomically with the state written there: a crash keeps both or neither."""
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is read-only; put_meta() is not allowed")
        writes = self._writes()
        writes.put(_RUNTIME_META + name.encode("utf-8"), value)
        self._commit(writes)

    def get_meta(self, name: str) -> bytes | None:
        """The runtime entry `name` (as committed, or as written earlier in the current batch), or None."""
        self._check_open()
        return self._get(_RUNTIME_META + name.encode("utf-8"))

    def write_batch(self) -> AbstractContextManager[None]:
        """A context in which puts and deletes commit as one atomic RocksDB write batch.

        Reads inside the block see its writes; if the block raises, nothing is written. Nested
        batches join the outermost one.
        """
        self._check_open()
        if self._read_only:
            raise ReadOnlyStoreError(f"store at {self._path} is read-only; write_batch() is not allowed")
        return self._batch()

    @contextmanager
    def _batch(self) -> Iterator[None]:
        if self._pending is not None:
            yield
            return
        pending = self._pending = PendingWrites(readable=True)
        self._head_cache = None
        try:
            yield
        finally:
            self._pending = None
            self._head_cache = None
        if len(pending):
            self._db.write(pending.batch, self._write_options)

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
        cls,
        checkpoint: str | os.PathLike[str],
        path: str | os.PathLike[str],
        codec: Codec[Any] | None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
        sync_writes: bool = False,
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
        self._head_cache = None
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
        head = self._read_head(key, check_key(key))
        if head is None:
            return None
        return self._decode(key, head.latest, head.record)

    def put(self, key: str, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version of `key`; returns its version number."""
        kb = self._check_write(key)
        check_event_time(event_time)
        record = encode_record(event_time, source, self._codec.encode(value))
        head = self._read_head(key, kb)
        tombstone = self._get(_TOMBSTONE + kb) if head is None else None
        if tombstone is not None:
            head = deleted_head(_U64.unpack(tombstone)[0])
        plan = plan_put(head, event_time, self._retention, lambda v: self._event_time_of(key, kb, v))
        dominated: list[bytes] = []
        if head is not None and not head.deleted and event_time <= head.latest_event_time:
            index_hi = _range(_INDEX, kb)[1]
            dominated = [k for k, _ in self._scan(_index_key(kb, event_time, 0), index_hi)]
        writes = self._writes()
        if tombstone is not None:
            writes.delete(_TOMBSTONE + kb)
        for index_key in dominated:
            writes.delete(index_key)
        if head is not None and not head.deleted:
            if plan.keep_previous:
                writes.put(_record_key(kb, head.latest), head.record)
            for version, version_time in plan.pruned:
                if version != head.latest:
                    writes.delete(_record_key(kb, version))
                writes.delete(_index_key(kb, version_time, version))
        writes.put(_index_key(kb, event_time, plan.version), b"")
        new_head = Head(
            plan.version, event_time, plan.oldest, plan.oldest_event_time, plan.max_event_time, record
        )
        writes.put(_HEAD + kb, encode_head(new_head))
        self._commit(writes)
        if self._pending is None:
            self._head_cache = (kb, new_head)
        return plan.version

    def as_of(self, key: str, version: int) -> StateVersion[T] | None:
        """`key` exactly at `version`, or None."""
        self._check_open()
        kb = check_key(key)
        head = self._read_head(key, kb)
        if head is None or not head.oldest <= version <= head.latest:
            return None
        if version == head.latest:
            return self._decode(key, version, head.record)
        return self._decode(key, version, self._retained_record(key, kb, head, version))

    def as_of_time(self, key: str, event_time: int) -> StateVersion[T] | None:
        """The highest retained version of `key` with event time <= `event_time`, or None."""
        self._check_open()
        check_event_time(event_time)
        kb = check_key(key)
        head = self._read_head(key, kb)
        if head is None:
            return None
        if event_time >= head.latest_event_time:
            return self._decode(key, head.latest, head.record)
        index_lo, _ = _range(_INDEX, kb)
        found = self._last(index_lo, _index_key(kb, event_time + 1, 0))  # event_time < latest's <= MAX
        if found is None:
            return None
        version = _U64.unpack_from(found, len(found) - _U64.size)[0]
        if not head.oldest <= version < head.latest:
            raise CorruptStateError(
                key, version, f"time index points outside the retained versions {head.oldest}..{head.latest}"
            )
        return self._decode(key, version, self._retained_record(key, kb, head, version))

    def history(self, key: str, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of `key`, newest first."""
        self._check_open()
        check_limit(limit)
        kb = check_key(key)
        head = self._read_head(key, kb)
        if head is None or limit == 0:
            return []
        older = list(range(head.latest - 1, max(head.oldest, head.latest - limit + 1) - 1, -1))
        raws = self._multi_get([_record_key(kb, v) for v in older])
        result = [self._decode(key, head.latest, head.record)]
        for version, raw in zip(older, raws, strict=True):
            if raw is None:
                raise CorruptStateError(key, version, self._missing(head))
            result.append(self._decode(key, version, raw))
        return result

    # -- reads through the pending batch -------------------------------------------------------------

    def _get(self, raw_key: bytes) -> bytes | None:
        pending = self._pending
        if pending is not None and pending.decides(raw_key):
            return pending.value(raw_key)
        value: bytes | None = self._db.get(raw_key)
        return value

    def _multi_get(self, raw_keys: list[bytes]) -> list[bytes | None]:
        if not raw_keys:
            return []
        pending = self._pending
        if pending is None:
            values: list[bytes | None] | None = self._db.get(list[Any](raw_keys))
            return values if values is not None else [None] * len(raw_keys)
        return [self._get(k) for k in raw_keys]

    def _scan(self, lo: bytes, hi: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Live (key, value) pairs with lo <= key < hi, ascending, pending writes merged in."""
        pending = self._pending
        overlay = pending.entries(lo, hi) if pending is not None else []
        it = self._db.iter()
        it.seek(lo)
        i = 0
        while True:
            db_key: bytes | None = it.key() if it.valid() else None
            if db_key is not None and db_key >= hi:
                db_key = None
            if i < len(overlay) and (db_key is None or overlay[i][0] <= db_key):
                key, value = overlay[i]
                i += 1
                if db_key == key:
                    it.next()
                if value is not None:
                    yield key, value
                continue
            if db_key is None:
                return
            if pending is None or not pending.decides(db_key):
                yield db_key, it.value()
            it.next()

    def _last(self, lo: bytes, hi: bytes) -> bytes | None:
        """The greatest live key in [lo, hi), pending writes merged in."""
        pending = self._pending
        it = self._db.iter()
        it.seek_for_prev(hi)
        db_key: bytes | None = None
        while it.valid():
            key: bytes = it.key()
            if key < lo:
                break
            if key < hi and (pending is None or not pending.decides(key)):
                db_key = key
                break
            it.prev()
        if pending is not None:
            for key, value in reversed(pending.entries(lo, hi)):
                if value is not None:
                    return key if db_key is None or key > db_key else db_key
        return db_key

    # -- helpers -----------------------------------------------------------------------------------

    def _writes(self) -> PendingWrites:
        return self._pending if self._pending is not None else PendingWrites(readable=False)

    def _commit(self, writes: PendingWrites) -> None:
        if writes is not self._pending:
            self._db.write(writes.batch, self._write_options)

    def _read_head(self, key: str, kb: bytes) -> Head | None:
        cached = self._head_cache
        if cached is not None and cached[0] == kb and self._pending is None:
            return cached[1]
        raw = self._get(_HEAD + kb)
        if raw is None:
            return None
        try:
            head = decode_head(raw)
        except (RecordFormatError, HeadFormatMismatch) as exc:
            raise CorruptStateError(key, None, str(exc)) from exc
        if head.deleted:
            return None
        if self._pending is None and not self._read_only:
            self._head_cache = (kb, head)
        return head

    def _retained_record(self, key: str, kb: bytes, head: Head, version: int) -> bytes:
        raw = self._get(_record_key(kb, version))
        if raw is None:
            raise CorruptStateError(key, version, self._missing(head))
        return raw

    def _missing(self, head: Head) -> str:
        return f"record missing although the key's retained range is [{head.oldest}, {head.latest}]"

    def _event_time_of(self, key: str, kb: bytes, version: int) -> int:
        raw = self._get(_record_key(kb, version))
        if raw is None:
            raise CorruptStateError(key, version, "record missing while applying retention")
        try:
            return record_event_time(raw)
        except RecordFormatError as exc:
            raise CorruptStateError(key, version, str(exc)) from exc

    def _decode(self, key: str, version: int, raw: bytes) -> StateVersion[T]:
        try:
            record = decode_record(raw)
            value = self._codec.decode(record.payload)
        except (RecordFormatError, StateDecodeError) as exc:
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

