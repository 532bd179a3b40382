"""The one layout of versioned state, shared by every backend (memory, RocksDB, Flink keyed state).

Per key there are three kinds of entries:

* **Head** (`Head`, one small entry, rewritten by every put): the latest version number, the oldest
  retained one, the ring size its records are slotted by, the key's event-time watermark
  (`max_event_time`, what horizon retention prunes against), the event time of every retained version
  (`times`, oldest first: retention and `as_of_time` never read a record), and the key's *inline* side
  entries (small unversioned data that changes with almost every event, e.g. the open chunk of the
  idempotency ids, so writing it costs no extra write). A deleted key keeps a head with `deleted=True`
  and only its version counter (versions are never reused).
* **Version records** (`encode_record`): one per version, written exactly once, when the version is put, at
  its *slot* (`slot_of`), and never rewritten. With a count bound (`max_versions = N`) slots form a ring of N
  (`version % N`): the put of version v overwrites the slot of version v - N, which is exactly the version
  count retention drops, so pruning is a blind overwrite and never reads. Without a count bound the slot is
  the version itself and pruned versions are blind deletes (their numbers are known from the head). Horizon
  retention only moves `oldest` (the record stays until its slot is reused or the key is forgotten). A key
  whose head was slotted by another ring (the store reopened with another `max_versions`) has its retained
  records moved to their new slots by its next put (`PutPlan.reslot`), the only put that reads records.
* **Side entries** (named bytes, unversioned): what a key needs besides its versions, stored once per key
  and written only when changed (idempotency ids are kept here, never inside versions). Inline entries live
  in the head (above); the others are separate entries.

Readers check the record's version against the slot's expected version, so a slot that a damaged head points
at wrongly is detected (`CorruptStateError`), never silently served.

Byte layouts (integers big-endian):

    record:  >Q version, >q event_time, B flags [, >q offset, >i partition, >H topic length, topic utf-8],
             then the codec's bytes of the value.          flags bit 0: source present
    head:    >B HEAD_FORMAT, B flags, >Q latest, >Q oldest, >q max_event_time, >I ring (0: unbounded),
             (latest - oldest + 1) x >q event times (none when deleted),
             >H number of inline side entries, each: >H name length, name utf-8, >I value length, value.
             flags bit 0: deleted

Versions 1 (`HEAD_FORMAT` 1, before 2026-12-06) kept the latest record inside the head and older records
elsewhere; `state._legacy` reads that layout so each backend converts a key the first time it touches it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from state.contract import RetentionPolicy, SourceCoordinates

#: Version of the head/record byte layout above.
HEAD_FORMAT = 2

_RECORD = struct.Struct(">QqB")
_SOURCE = struct.Struct(">qiH")
_HEAD = struct.Struct(">BBQQqI")
_COUNT = struct.Struct(">H")
_NAME = struct.Struct(">H")
_VALUE = struct.Struct(">I")
_HAS_SOURCE = 1
_DELETED = 1
#: The most bytes an inline side entry may hold (inline entries are rewritten with every head).
MAX_INLINE_BYTES = 4096


class LayoutError(ValueError):
    """Bytes that do not follow the record/head layout (the caller adds key and version)."""


class HeadFormatMismatch(LayoutError):
    """A head written in another head format (`found`: the format byte); the caller converts or refuses."""

    def __init__(self, found: int) -> None:
        self.found = found
        super().__init__(f"key head format {found}, expected {HEAD_FORMAT}")


class Record(NamedTuple):
    """One decoded version record (value still encoded)."""

    version: int
    event_time: int
    source: SourceCoordinates | None
    payload: bytes


class Head(NamedTuple):
    """The per-key head (see the module docstring). `times[i]` is the event time of version `oldest + i`."""

    latest: int
    oldest: int
    max_event_time: int
    times: tuple[int, ...]
    inline: dict[str, bytes]
    #: The ring size the key's records are slotted by (`max_versions`; 0: unbounded, slot = version).
    ring: int = 0
    deleted: bool = False

    @property
    def latest_event_time(self) -> int:
        """The event time of the latest version."""
        return self.times[-1]

    def time_of(self, version: int) -> int:
        """The event time of the retained `version`."""
        return self.times[version - self.oldest]


class PutPlan(NamedTuple):
    """What a put changes: the new head, the slot its record goes to, and the versions retention dropped."""

    version: int
    head: Head
    slot: int
    #: Retained versions this put dropped, oldest first (their slots are reused or, unbounded, deleted).
    pruned: range
    #: The ring the key's records were slotted by if it differs from the new head's (None: same ring); the
    #: caller then moves the retained older records to their new slots.
    reslot: int | None = None


def ring_of(retention: RetentionPolicy) -> int:
    """The ring size records are slotted by under `retention` (0: no count bound)."""
    return retention.max_versions or 0


def slot_of(version: int, ring: int) -> int:
    """Where the record of `version` is stored: `version % ring` (a ring), or the version itself (ring 0)."""
    return version % ring if ring else version


def plan_put(head: Head | None, event_time: int, retention: RetentionPolicy) -> PutPlan:
    """Plan the put of a version at `event_time` on a key whose head is `head` (None: a new key).

    Retention (the contract's rules) is applied from the oldest retained version forward using the head's
    event times only; nothing is read.
    """
    ring = retention.max_versions or 0
    inline = {} if head is None else head.inline
    if head is None or head.deleted:
        version = 1 if head is None else head.latest + 1
        new = Head(version, version, event_time, (event_time,), inline, ring)
        return PutPlan(version, new, slot_of(version, ring), range(0))
    version = head.latest + 1
    watermark = head.max_event_time if head.max_event_time >= event_time else event_time
    times = (*head.times, event_time)
    oldest = head.oldest
    cut = version - retention.max_versions + 1 if retention.max_versions is not None else 1
    drop = cut - oldest if cut > oldest else 0
    if retention.horizon_ms is not None:
        floor = watermark - retention.horizon_ms
        limit = version - oldest  # the latest version is never pruned
        while drop < limit and times[drop] < floor:
            drop += 1
    if drop:
        times = times[drop:]
    new = Head(version, oldest + drop, watermark, times, inline, ring)
    reslot = head.ring if head.ring != ring else None
    return PutPlan(version, new, slot_of(version, ring), range(oldest, oldest + drop), reslot)


def deleted_head(last_version: int) -> Head:
    """The head of a deleted key: only its last version number (versions are never reused)."""
    return Head(last_version, last_version + 1, 0, (), {}, 0, deleted=True)


def encode_record(version: int, event_time: int, source: SourceCoordinates | None, payload: bytes) -> bytes:
    """The bytes of one version record."""
    if source is None:
        return _RECORD.pack(version, event_time, 0) + payload
    topic = source.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError(f"source topic name is too long ({len(topic)} bytes, max 65535)")
    return b"".join(
        (_RECORD.pack(version, event_time, _HAS_SOURCE), _SOURCE.pack(source.offset, source.partition, len(topic)),
         topic, payload)
    )


def decode_record(data: bytes) -> Record:
    """Decode a version record; `LayoutError` if the bytes do not follow the layout."""
    try:
        version, event_time, flags = _RECORD.unpack_from(data, 0)
        pos = _RECORD.size
        source = None
        if flags & _HAS_SOURCE:
            offset, partition, topic_len = _SOURCE.unpack_from(data, pos)
            pos += _SOURCE.size
            if pos + topic_len > len(data):
                raise LayoutError(f"topic name runs past the end of the record ({len(data)} bytes)")
            topic = bytes(data[pos:pos + topic_len]).decode("utf-8")
            pos += topic_len
            source = SourceCoordinates(topic, partition, offset)
        elif flags != 0:
            raise LayoutError(f"unknown record flags {flags:#x}")
    except (struct.error, UnicodeDecodeError) as exc:
        raise LayoutError(f"record of {len(data)} bytes does not follow the layout: {exc}") from exc
    return Record(version, event_time, source, bytes(data[pos:]))


def record_version(data: bytes) -> int:
    """Only the version number of a record (cheap; used to check a slot)."""
    try:
        version: int = _RECORD.unpack_from(data, 0)[0]
    except struct.error as exc:
        raise LayoutError(f"record of {len(data)} bytes is shorter than its header: {exc}") from exc
    return version


def encode_head(head: Head) -> bytes:
    """The bytes of a head."""
    parts = [_HEAD.pack(
        HEAD_FORMAT, _DELETED if head.deleted else 0, head.latest, head.oldest, head.max_event_time, head.ring
    )]
    if not head.deleted:
        parts.append(struct.pack(f">{len(head.times)}q", *head.times))
    parts.append(_COUNT.pack(len(head.inline)))
    for name, value in head.inline.items():
        raw = name.encode("utf-8")
        parts.append(_NAME.pack(len(raw)))
        parts.append(raw)
        parts.append(_VALUE.pack(len(value)))
        parts.append(value)
    return b"".join(parts)


def decode_head(data: bytes) -> Head:
    """Decode a head; `HeadFormatMismatch` for another format byte, `LayoutError` for damaged bytes."""
    if not data:
        raise LayoutError("empty key head")
    if data[0] != HEAD_FORMAT:
        raise HeadFormatMismatch(data[0])
    try:
        _, flags, latest, oldest, max_et, ring = _HEAD.unpack_from(data, 0)
        pos = _HEAD.size
        deleted = bool(flags & _DELETED)
        if flags & ~_DELETED:
            raise LayoutError(f"unknown key head flags {flags:#x}")
        times: tuple[int, ...] = ()
        if not deleted:
            if not 1 <= oldest <= latest:
                raise LayoutError(f"key head has retained range [{oldest}, {latest}]")
            n = latest - oldest + 1
            times = struct.unpack_from(f">{n}q", data, pos)
            pos += 8 * n
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        inline: dict[str, bytes] = {}
        for _ in range(count):
            (name_len,) = _NAME.unpack_from(data, pos)
            pos += _NAME.size
            name = bytes(data[pos:pos + name_len]).decode("utf-8")
            pos += name_len
            (value_len,) = _VALUE.unpack_from(data, pos)
            pos += _VALUE.size
            inline[name] = bytes(data[pos:pos + value_len])
            pos += value_len
        if pos != len(data):
            raise LayoutError(f"key head has {len(data) - pos} unexpected trailing bytes")
    except (struct.error, UnicodeDecodeError) as exc:
        raise LayoutError(f"key head of {len(data)} bytes does not follow the layout: {exc}") from exc
    return Head(latest, oldest, max_et, times, inline, ring, deleted)


def as_of_time_version(head: Head, event_time: int) -> int | None:
    """The highest retained version whose event time is <= `event_time` (from the head alone), or None."""
    times = head.times
    for i in range(len(times) - 1, -1, -1):
        if times[i] <= event_time:
            return head.oldest + i
    return None


def with_inline(head: Head, name: str, value: bytes | None) -> Head:
    """`head` with the inline side entry `name` set to `value` (None removes it)."""
    inline = dict(head.inline)
    if value is None:
        inline.pop(name, None)
    else:
        if len(value) > MAX_INLINE_BYTES:
            raise ValueError(
                f"inline side entry {name!r} of {len(value)} bytes is larger than {MAX_INLINE_BYTES}: inline entries "
                "are rewritten with every version; store it as a separate side entry (inline=False)"
            )
        inline[name] = value
    return head._replace(inline=inline)


def check_side_name(name: str) -> str:
    """Validate a side-entry name (a non-empty str without NUL, at most 255 UTF-8 bytes) and return it."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name.encode("utf-8")) > 255:
        raise ValueError(f"side entry names are non-empty str without NUL, at most 255 bytes; got {name!r}")
    return name
