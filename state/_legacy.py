"""Layout 1 (before 2026-12-06): byte layout of stored versions and per-key headers, and its put arithmetic.

Kept so that every backend can read state written by it and convert each key the first time it touches it
(`state.layout` is the current layout). Internal module; not part of the API.

Record (one version):  >q event_time, B flags [, >q offset, >i partition, >H topic length, topic utf-8]
                       followed by the codec's bytes of the value. flags bit 0: source present.
Head (one key):        >B head format, B flags, >Q latest, >q latest event time, >Q oldest,
                       >q oldest event time, >q max event time, followed by the latest version's
                       record. flags bit 0: deleted (only the version counter is kept).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from state.contract import RetentionPolicy, SourceCoordinates

#: Version of the head/record byte layout above.
HEAD_FORMAT = 1

_RECORD = struct.Struct(">qB")
_SOURCE = struct.Struct(">qiH")
_HEAD = struct.Struct(">BBQqQqq")
_HAS_SOURCE = 1
_DELETED = 1


class Record(NamedTuple):
    """One decoded version record (value still encoded)."""

    event_time: int
    source: SourceCoordinates | None
    payload: bytes


class Head(NamedTuple):
    """The per-key header: latest version (with its record), retained range and event-time watermark."""

    latest: int
    latest_event_time: int
    oldest: int
    oldest_event_time: int
    max_event_time: int
    record: bytes
    deleted: bool = False


class RecordFormatError(ValueError):
    """Bytes that do not follow the record/head layout (the caller adds key and version)."""


def encode_record(event_time: int, source: SourceCoordinates | None, payload: bytes) -> bytes:
    """The bytes of one version record."""
    if source is None:
        return _RECORD.pack(event_time, 0) + payload
    topic = source.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError(f"source topic name is too long ({len(topic)} bytes, max 65535)")
    return b"".join(
        (_RECORD.pack(event_time, _HAS_SOURCE), _SOURCE.pack(source.offset, source.partition, len(topic)),
         topic, payload)
    )


def decode_record(data: bytes) -> Record:
    """Decode a version record; raises `RecordFormatError` if the bytes do not follow the layout."""
    try:
        event_time, flags = _RECORD.unpack_from(data, 0)
        pos = _RECORD.size
        source = None
        if flags & _HAS_SOURCE:
            offset, partition, topic_len = _SOURCE.unpack_from(data, pos)
            pos += _SOURCE.size
            if pos + topic_len > len(data):
                raise RecordFormatError(f"topic name runs past the end of the record ({len(data)} bytes)")
            topic = bytes(data[pos:pos + topic_len]).decode("utf-8")
            pos += topic_len
            source = SourceCoordinates(topic, partition, offset)
        elif flags != 0:
            raise RecordFormatError(f"unknown record flags {flags:#x}")
    except (struct.error, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"record of {len(data)} bytes does not follow the layout: {exc}") from exc
    return Record(event_time, source, bytes(data[pos:]))


def record_event_time(data: bytes) -> int:
    """Only the event time of a version record (cheap; used by retention)."""
    try:
        event_time: int = _RECORD.unpack_from(data, 0)[0]
    except struct.error as exc:
        raise RecordFormatError(f"record of {len(data)} bytes is shorter than its header: {exc}") from exc
    return event_time


def encode_head(head: Head) -> bytes:
    """The bytes of a per-key header."""
    return _HEAD.pack(
        HEAD_FORMAT, _DELETED if head.deleted else 0, head.latest, head.latest_event_time, head.oldest,
        head.oldest_event_time, head.max_event_time,
    ) + head.record


def decode_head(data: bytes) -> Head:
    """Decode a per-key header; raises `RecordFormatError` (layout) or `HeadFormatMismatch` (format byte)."""
    if not data:
        raise RecordFormatError("empty key header")
    if data[0] != HEAD_FORMAT:
        raise HeadFormatMismatch(data[0])
    try:
        _, flags, latest, latest_et, oldest, oldest_et, max_et = _HEAD.unpack_from(data, 0)
    except struct.error as exc:
        raise RecordFormatError(f"key header of {len(data)} bytes is shorter than its layout: {exc}") from exc
    if flags & ~_DELETED:
        raise RecordFormatError(f"unknown key header flags {flags:#x}")
    deleted = bool(flags & _DELETED)
    if not deleted and not 1 <= oldest <= latest:
        raise RecordFormatError(f"key header has retained range [{oldest}, {latest}]")
    return Head(latest, latest_et, oldest, oldest_et, max_et, bytes(data[_HEAD.size:]), deleted)


def deleted_head(last_version: int) -> Head:
    """A header that only remembers the last version of a deleted key."""
    return Head(last_version, 0, last_version + 1, 0, 0, b"", deleted=True)


class HeadFormatMismatch(ValueError):
    """A per-key header was written in another head format (value: the format byte found)."""

    def __init__(self, found: int) -> None:
        self.found = found
        super().__init__(f"key header format {found}, expected {HEAD_FORMAT}")


class PutPlan(NamedTuple):
    """What a put changes: the new header fields and which older versions retention removes."""

    version: int
    oldest: int
    oldest_event_time: int
    max_event_time: int
    #: (version, event_time) of every pruned version, oldest first; may include the previous latest.
    pruned: list[tuple[int, int]]
    #: True if the previous latest version survives and must be moved into the history.
    keep_previous: bool


def plan_put(
    head: Head | None,
    event_time: int,
    retention: RetentionPolicy,
    read_event_time: Callable[[int], int],
) -> PutPlan:
    """Plan a put of a version at `event_time` on a key whose current header is `head`.

    `read_event_time(v)` must return the event time of a retained version `v` strictly between the
    current oldest and latest; it is called at most once per pruned version (cost ~ what is pruned).
    """
    if head is None or head.deleted:
        version = 1 if head is None else head.latest + 1
        return PutPlan(version, version, event_time, event_time, [], False)
    version = head.latest + 1
    previous = head.latest
    watermark = max(head.max_event_time, event_time)
    cut = version - retention.max_versions + 1 if retention.max_versions is not None else 1
    floor = watermark - retention.horizon_ms if retention.horizon_ms is not None else None
    oldest, oldest_et = head.oldest, head.oldest_event_time
    pruned: list[tuple[int, int]] = []
    while oldest < version and (oldest < cut or (floor is not None and oldest_et < floor)):
        pruned.append((oldest, oldest_et))
        oldest += 1
        if oldest == version:
            oldest_et = event_time
        elif oldest == previous:
            oldest_et = head.latest_event_time
        else:
            oldest_et = read_event_time(oldest)
    return PutPlan(version, oldest, oldest_et, watermark, pruned, oldest <= previous)
