"""The parts of `RocksVersionedStore` below its API (internal module): raw key names, the cache of decoded
heads, the pending changes of a write batch, opening RocksDB, and converting one layout-1 key."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

from rocksdict import (
    AccessType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
)

from state._legacy import decode_head as decode_legacy_head
from state._legacy import decode_record as decode_legacy_record
from state.exceptions import StateError, StateStoreLockedError
from state.layout import Head, deleted_head, encode_head, encode_record, slot_of

META_KEY = b"\x00meta/format"
RUNTIME_META = b"\x00meta/runtime/"
HEAD = b"\x03"
SLOT = b"\x05"
SIDE = b"\x06"
# layout 1 (converted on first touch)
LEGACY_RECORD = b"\x01"
LEGACY_INDEX = b"\x02"
LEGACY_TOMBSTONE = b"\x04"

_U64 = struct.Struct(">Q")
_MAX_U64 = 2**64 - 1
_SEP = b"\x00"
_END = b"\x01"


def slot_key(kb: bytes, slot: int) -> bytes:
    """The raw key of a record slot of key `kb`."""
    return SLOT + kb + _SEP + _U64.pack(slot)


def side_key(kb: bytes, name: str) -> bytes:
    """The raw key of the separate side entry `name` of key `kb`."""
    return SIDE + kb + _SEP + name.encode("utf-8")


def _range(prefix: bytes, kb: bytes) -> tuple[bytes, bytes]:
    return prefix + kb + _SEP, prefix + kb + _END


def slot_range(kb: bytes) -> tuple[bytes, bytes]:
    """[lo, hi) of every record slot of key `kb`."""
    return _range(SLOT, kb)


def side_range(kb: bytes) -> tuple[bytes, bytes]:
    """[lo, hi) of every separate side entry of key `kb`."""
    return _range(SIDE, kb)


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


def open_rdict(path: Path, read_only: bool, block_cache_bytes: int, write_buffer_bytes: int) -> Rdict:
    """Open the RocksDB directory `path` (created unless `read_only`), with errors that say what to do."""
    if path.exists() and not path.is_dir():
        raise StateError(f"state directory {path} is a file; expected a directory")
    if read_only and not (path / "CURRENT").exists():
        raise StateError(f"no RocksDB state at {path} (nothing to open read-only)")
    cache = Cache(block_cache_bytes)
    options = _options(cache, write_buffer_bytes, create=not read_only)
    # rocksdict applies `options` to the default column family of an *existing* database only if it is
    # named here; otherwise that family is reopened with the options stored in the directory
    families = {"default": _options(cache, write_buffer_bytes, create=not read_only)}
    access = AccessType.read_only(False) if read_only else AccessType.read_write()
    try:
        return Rdict(str(path), options, column_families=families, access_type=access)
    except Exception as exc:  # rocksdict raises plain Exception; re-raised with context, not hidden
        message = str(exc)
        if "lock" in message.lower():
            raise StateStoreLockedError(
                f"state directory {path} is already open for writing ({message}); only one writer may open it: "
                "stop the other process, or open with read_only=True to inspect"
            ) from exc
        raise StateError(f"cannot open RocksDB state directory {path}: {message}") from exc


class CachedKey:
    """What the cache knows of one key: its head (None: no head), the latest record's bytes, side entries read
    (None: known absent), and (only for keys converted read-only) its record slots."""

    __slots__ = ("head", "latest", "sides", "size", "slots")

    def __init__(self, head: Head | None, latest: bytes | None, sides: dict[str, bytes | None],
                 slots: dict[int, bytes] | None) -> None:
        self.head = head
        self.latest = latest
        self.sides = sides
        self.slots = slots
        self.size = 64 + (len(latest) if latest else 0) + (8 * len(head.times) if head else 0) + sum(
            len(v) for v in (head.inline.values() if head else ())) + sum(len(v or b"") for v in sides.values())


class KeyCache:
    """A bounded cache of decoded heads (`max_keys` keys, about `max_bytes` of record and side bytes); the
    oldest entries are dropped first. Holds committed state only."""

    def __init__(self, max_keys: int, max_bytes: int) -> None:
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self._entries: dict[bytes, CachedKey] = {}
        self._bytes = 0

    def get(self, kb: bytes) -> CachedKey | None:
        """The cached entry of `kb`, or None."""
        return self._entries.get(kb)

    def put(self, kb: bytes, head: Head | None, latest: bytes | None, sides: dict[str, bytes | None] | None = None,
            *, slots: dict[int, bytes] | None = None) -> None:
        """Cache (replace) what is known of `kb`."""
        self.drop(kb)
        entry = CachedKey(head, latest, {} if sides is None else sides, slots)
        self._entries[kb] = entry
        self._bytes += entry.size
        self._evict()

    def remember_latest(self, kb: bytes, entry: CachedKey, record: bytes) -> None:
        """Add the latest record's bytes to a cached entry."""
        entry.latest = record
        entry.size += len(record)
        self._bytes += len(record)
        self._evict()

    def remember_side(self, kb: bytes, entry: CachedKey, name: str, value: bytes | None) -> None:
        """Add a side entry read from RocksDB to a cached entry."""
        entry.sides[name] = value
        entry.size += len(value or b"")
        self._bytes += len(value or b"")
        self._evict()

    def drop(self, kb: bytes) -> None:
        """Forget `kb`."""
        old = self._entries.pop(kb, None)
        if old is not None:
            self._bytes -= old.size

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._bytes = 0

    def _evict(self) -> None:
        entries = self._entries
        while entries and (len(entries) > self.max_keys or self._bytes > self.max_bytes):
            oldest = next(iter(entries))
            self._bytes -= entries.pop(oldest).size

    def __len__(self) -> int:
        return len(self._entries)


class PendingKey:
    """One key's changes in an open batch: its new head, latest record, slot and side writes."""

    __slots__ = ("head", "latest", "sides", "slots", "wiped")

    def __init__(self, head: Head | None, latest: bytes | None) -> None:
        self.head = head
        self.latest = latest
        #: Every stored slot and separate side entry of the key was deleted earlier in this batch.
        self.wiped = False
        self.slots: dict[int, bytes | None] = {}
        self.sides: dict[str, tuple[bytes | None, bool]] = {}


class Pending:
    """The changes of an open write batch: slot writes go into the RocksDB `batch` at once (in order); heads,
    side entries and runtime entries once per key when the batch finishes."""

    def __init__(self) -> None:
        self.batch = WriteBatch(raw_mode=True)
        self.keys: dict[bytes, PendingKey] = {}
        self.meta: dict[bytes, bytes] = {}
        #: (key, name) of side entries changed since `side_changes` last ran.
        self.changed_sides: dict[tuple[bytes, str], None] = {}

    def entry(self, kb: bytes, head: Head | None, cache: KeyCache) -> PendingKey:
        """The pending entry of `kb`, created from its current `head` (and the cache's latest record)."""
        entry = self.keys.get(kb)
        if entry is None:
            cached = cache.get(kb)
            entry = self.keys[kb] = PendingKey(head, cached.latest if cached is not None else None)
        return entry

    def wipe(self, kb: bytes, legacy: bool) -> PendingKey:
        """Delete every stored slot and side entry of `kb` (and its layout-1 entries when `legacy`); the entry's
        head becomes None (set it after)."""
        entry = self.keys.get(kb)
        if entry is None:
            entry = self.keys[kb] = PendingKey(None, None)
        entry.head, entry.latest, entry.wiped = None, None, True
        entry.slots.clear()
        entry.sides.clear()
        self.batch.delete_range(*slot_range(kb))
        self.batch.delete_range(*side_range(kb))
        if legacy:
            self.batch.delete_range(*_range(LEGACY_RECORD, kb))
            self.batch.delete_range(*_range(LEGACY_INDEX, kb))
            self.batch.delete(LEGACY_TOMBSTONE + kb)
        return entry

    def put_slot(self, kb: bytes, slot: int, record: bytes) -> None:
        """Write a record into a slot."""
        self.keys[kb].slots[slot] = record
        self.batch.put(slot_key(kb, slot), record)

    def delete_slot(self, kb: bytes, slot: int) -> None:
        """Delete a slot."""
        self.keys[kb].slots[slot] = None
        self.batch.delete(slot_key(kb, slot))

    def slot(self, kb: bytes, slot: int) -> tuple[bool, bytes | None]:
        """(whether the batch decides the slot, its bytes)."""
        entry = self.keys.get(kb)
        if entry is None:
            return False, None
        if slot in entry.slots:
            return True, entry.slots[slot]
        return entry.wiped, None

    def set_side(self, kb: bytes, name: str, value: bytes | None, inline: bool) -> None:
        """Record a side entry change (an inline entry's value lives in the head; its separate entry goes)."""
        self.keys[kb].sides[name] = (value, inline)
        self.changed_sides[kb, name] = None

    def side(self, kb: bytes, name: str) -> tuple[bool, bytes | None]:
        """(whether the batch decides the separate side entry, its bytes)."""
        entry = self.keys.get(kb)
        if entry is None:
            return False, None
        change = entry.sides.get(name)
        if change is not None:
            return True, change[0]
        return entry.wiped, None

    def side_changes(self) -> list[tuple[bytes, str, bytes | None, bool]]:
        """(key, name, value, inline) of every side entry changed since the previous call (the whole batch on
        the first), as the batch leaves it, in the order of their first change."""
        changed = self.changed_sides
        if not changed:
            return []
        changes = []
        for kb, name in changed:
            entry = self.keys[kb]
            change = entry.sides.get(name)
            if change is None:  # the key was wiped after the change: its removal is published instead
                continue
            value, inline = change
            if inline:
                value = entry.head.inline.get(name) if entry.head is not None else None
            changes.append((kb, name, value, inline))
        self.changed_sides = {}
        return changes

    def finish(self, cache: KeyCache) -> WriteBatch:
        """Add the heads, side entries and runtime entries to the batch, update `cache`, return the batch."""
        batch = self.batch
        for kb, entry in self.keys.items():
            head = entry.head
            if head is None:
                batch.delete(HEAD + kb)
            else:
                batch.put(HEAD + kb, encode_head(head))
            for name, (value, inline) in entry.sides.items():
                if inline or value is None:
                    batch.delete(side_key(kb, name))
                else:
                    batch.put(side_key(kb, name), value)
            cached = cache.get(kb)
            sides: dict[str, bytes | None] = {} if entry.wiped or cached is None else cached.sides
            for name, (value, inline) in entry.sides.items():
                sides[name] = None if inline else value
            cache.put(kb, head, entry.latest if head is not None and not head.deleted else None, sides)
        for raw_key, value in self.meta.items():
            batch.put(raw_key, value)
        return batch


class Converted(NamedTuple):
    """A layout-1 key in layout 2: its head, the latest record's bytes, the records by slot."""

    head: Head
    latest: bytes | None
    slots: dict[int, bytes]


def convert_legacy_key(db: Any, kb: bytes, raw_head: bytes | None, ring: int) -> Converted:
    """Read key `kb` in layout 1 (its head `raw_head`, or None for a deleted key's counter) and return it in
    layout 2, slotted by `ring` (or by version when more versions are retained than the ring holds)."""
    if raw_head is None:
        last = _U64.unpack(db[LEGACY_TOMBSTONE + kb])[0]
        return Converted(deleted_head(last), None, {})
    old = decode_legacy_head(raw_head)
    if old.deleted:
        return Converted(deleted_head(old.latest), None, {})
    versions = list(range(old.oldest, old.latest))
    raws = db[[LEGACY_RECORD + kb + _SEP + _U64.pack(_MAX_U64 - v) for v in versions]] if versions else []
    records = [*raws, old.record]
    if any(raw is None for raw in records):
        raise ValueError(f"layout-1 records missing although versions {old.oldest}..{old.latest} are retained")
    ring_used = ring if ring and old.latest - old.oldest + 1 <= ring else 0
    slots: dict[int, bytes] = {}
    times = []
    latest = b""
    for version, raw in zip([*versions, old.latest], records, strict=True):
        decoded = decode_legacy_record(raw)
        latest = encode_record(version, decoded.event_time, decoded.source, decoded.payload)
        slots[slot_of(version, ring_used)] = latest
        times.append(decoded.event_time)
    head = Head(old.latest, old.oldest, old.max_event_time, tuple(times), {}, ring_used)
    return Converted(head, latest, slots)
