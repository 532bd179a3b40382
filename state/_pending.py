"""Uncommitted writes of a RocksDB batch, readable before they are committed (internal module).

`PendingWrites` mirrors every put/delete/delete_range into a `rocksdict.WriteBatch` (which is what
gets committed, atomically) and, when `readable`, into a sorted in-memory view, so that reads inside
a `write_batch()` block see the block's own writes. Batches are small; the view is plain lists.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from rocksdict import WriteBatch


class PendingWrites:
    """A WriteBatch plus (optionally) a read view of it: point values, tombstones, range tombstones."""

    __slots__ = ("_ranges", "_sorted", "_values", "batch", "readable")

    def __init__(self, *, readable: bool) -> None:
        self.batch = WriteBatch(raw_mode=True)
        self.readable = readable
        self._values: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] = []
        self._ranges: list[tuple[bytes, bytes]] = []

    def put(self, key: bytes, value: bytes) -> None:
        """Write `value` at `key`."""
        self.batch.put(key, value)
        if self.readable:
            self._set(key, value)

    def delete(self, key: bytes) -> None:
        """Delete `key`."""
        self.batch.delete(key)
        if self.readable:
            self._set(key, None)

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Delete every key in [lo, hi)."""
        self.batch.delete_range(lo, hi)
        if self.readable:
            start, stop = bisect_left(self._sorted, lo), bisect_left(self._sorted, hi)
            for key in self._sorted[start:stop]:
                del self._values[key]
            del self._sorted[start:stop]
            self._ranges.append((lo, hi))

    def _set(self, key: bytes, value: bytes | None) -> None:
        if key not in self._values:
            insort(self._sorted, key)
        self._values[key] = value

    def decides(self, key: bytes) -> bool:
        """True if the pending writes determine the value of `key` (a put, a tombstone or a range)."""
        return key in self._values or any(lo <= key < hi for lo, hi in self._ranges)

    def value(self, key: bytes) -> bytes | None:
        """The pending value of `key` (only meaningful when `decides(key)`); None means deleted."""
        return self._values.get(key)

    def entries(self, lo: bytes, hi: bytes) -> list[tuple[bytes, bytes | None]]:
        """Pending point writes with keys in [lo, hi), ascending (None values are tombstones)."""
        start, stop = bisect_left(self._sorted, lo), bisect_left(self._sorted, hi)
        return [(k, self._values[k]) for k in self._sorted[start:stop]]

    def __len__(self) -> int:
        return len(self.batch)
