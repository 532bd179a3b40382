"""Flink keyed state written by the layouts before layout 2, read so that `FlinkVersionedState` converts each key
the first time it touches it (internal module).

Two earlier layouts exist in Flink checkpoints and savepoints:

- **layout 1** (2026-12 to 2026-12-06): `<name>/head`, a `ValueState` of bytes holding the msgpack tuple
  (`state._legacy` head bytes, the version of the first record in the history list, the event times of the
  retained older versions), and `<name>/history`, a `ListState` of `state._legacy` records, oldest first;
- **the blob** (before 2026-12): `<name>/versions`, a `ValueState` of bytes holding the msgpack tuple
  (`state._legacy` head bytes, the records of the retained older versions from the head's oldest on).

Both give the same thing here: a layout-2 `Head` and the layout-2 records of every retained version.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from state import _legacy
from state.layout import Head, deleted_head, encode_record


class Converted(NamedTuple):
    """A key of an earlier layout in layout 2: its head and `{version: record bytes}` of its retained versions."""

    head: Head
    records: dict[int, bytes]


class LegacyLayoutError(ValueError):
    """Bytes of an earlier layout that cannot be read (the caller names the key and the Flink state)."""


_LAYOUT1_HEAD = msgspec.msgpack.Decoder(tuple[bytes, int, list[int]])
_BLOB = msgspec.msgpack.Decoder(tuple[bytes, list[bytes]])


def from_layout1(head_value: bytes, history: list[bytes], ring: int) -> Converted:
    """Convert a key of layout 1 (`<name>/head` value and the `<name>/history` records)."""
    try:
        head_bytes, stored_from, _times = _LAYOUT1_HEAD.decode(head_value)
    except msgspec.DecodeError as exc:
        raise LegacyLayoutError(f"layout-1 head of {len(head_value)} bytes: {exc}") from exc
    head = _decode_head(head_bytes)
    if head.deleted:
        return Converted(deleted_head(head.latest), {})
    older = [history[v - stored_from] if 0 <= v - stored_from < len(history) else None
             for v in range(head.oldest, head.latest)]
    return _convert(head, older, ring)


def from_blob(blob: bytes, ring: int) -> Converted:
    """Convert a key of the blob layout (`<name>/versions`)."""
    try:
        head_bytes, older = _BLOB.decode(blob)
    except msgspec.DecodeError as exc:
        raise LegacyLayoutError(f"earlier one-blob layout of {len(blob)} bytes: {exc}") from exc
    head = _decode_head(head_bytes)
    if head.deleted:
        return Converted(deleted_head(head.latest), {})
    return _convert(head, list(older), ring)


def _decode_head(head_bytes: bytes) -> _legacy.Head:
    try:
        return _legacy.decode_head(head_bytes)
    except (_legacy.RecordFormatError, _legacy.HeadFormatMismatch) as exc:
        raise LegacyLayoutError(f"layout-1 key head: {exc}") from exc


def _convert(head: _legacy.Head, older: list[bytes | None], ring: int) -> Converted:
    """`older[i]` is the layout-1 record of version `head.oldest + i` (None: missing)."""
    if len(older) != head.latest - head.oldest:
        raise LegacyLayoutError(
            f"layout-1 key retains versions {head.oldest}..{head.latest} but {len(older)} older records are stored"
        )
    records: dict[int, bytes] = {}
    times: list[int] = []
    for version, raw in enumerate((*older, head.record), start=head.oldest):
        if raw is None:
            raise LegacyLayoutError(f"layout-1 record of version {version} is missing from the history list")
        try:
            record = _legacy.decode_record(raw)
        except _legacy.RecordFormatError as exc:
            raise LegacyLayoutError(f"layout-1 record of version {version}: {exc}") from exc
        records[version] = encode_record(version, record.event_time, record.source, record.payload)
        times.append(record.event_time)
    # More retained versions than the ring holds (retention was shortened): slot them by version (ring 0); the
    # key's next put moves them to the ring as for any ring change (`state.layout.PutPlan.reslot`).
    slotted_by = ring if len(records) <= ring else 0
    return Converted(Head(head.latest, head.oldest, head.max_event_time, tuple(times), {}, slotted_by), records)
