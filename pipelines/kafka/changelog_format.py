"""The bytes of state changelog records (what `--state-changelog TOPIC` carries), written and read.

A record's Kafka key is the state key (UTF-8); its value is one of:

- `VERSION_FORMAT` (0x02) followed by the stored version record (`state.layout.encode_record`: version, event
  time, source, the codec's bytes of the value): one per state version, exactly the bytes the store keeps,
  so neither side encodes JSON or base64 on the hot path;
- `SIDE_FORMAT` (0x03), a flags byte (bit 0: present, bit 1: inline), `>H` name length, the name (UTF-8)
  and the entry's bytes: the key's side entry `name` as the batch (faust) or element (Flink) left it, one
  record per changed entry, so a compacted reading keeps the newest;
- no value (a tombstone): the key was forgotten (swept after expiry);
- a JSON object (first byte `{`): the changelog of streamscore before 2026-12-06
  (`{key, version, event_time, source, value}`), still read by every reader.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgspec

from state.contract import SourceCoordinates
from state.layout import LayoutError, Record, decode_record

VERSION_FORMAT = 0x02
SIDE_FORMAT = 0x03
_JSON_START = ord("{")
_SIDE = struct.Struct(">BH")
_PRESENT = 1
_INLINE = 2
_VERSION_PREFIX = bytes([VERSION_FORMAT])


class ChangelogFormatError(ValueError):
    """A changelog value in no known format (the message names the first byte and the length)."""


class JsonVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One state version of the JSON changelog (before 2026-12-06); `value` is the decoded JSON value."""

    key: str
    version: int
    event_time: int
    source: SourceCoordinates | None
    value: Any


class SideChange(NamedTuple):
    """A side entry as a changelog record carries it (`value` None: removed)."""

    name: str
    value: bytes | None
    inline: bool


_JSON_DECODER = msgspec.json.Decoder(JsonVersion)


def version_value(record: bytes) -> bytes:
    """The changelog value of a stored version record."""
    return _VERSION_PREFIX + record


def side_value(name: str, value: bytes | None, *, inline: bool) -> bytes:
    """The changelog value of side entry `name` set to `value` (None: removed)."""
    raw = name.encode("utf-8")
    flags = (_PRESENT if value is not None else 0) | (_INLINE if inline else 0)
    return bytes([SIDE_FORMAT]) + _SIDE.pack(flags, len(raw)) + raw + (value or b"")


def decode_value(value: bytes) -> Record | SideChange | JsonVersion:
    """Decode a (non-tombstone) changelog value; `ChangelogFormatError` if it is in no known format."""
    if not value:
        raise ChangelogFormatError("empty changelog value (a tombstone has no value at all)")
    first = value[0]
    try:
        if first == VERSION_FORMAT:
            return decode_record(memoryview(value)[1:])  # type: ignore[arg-type]
        if first == SIDE_FORMAT:
            flags, length = _SIDE.unpack_from(value, 1)
            start = 1 + _SIDE.size
            name = bytes(value[start:start + length]).decode("utf-8")
            rest = bytes(value[start + length:])
            return SideChange(name, rest if flags & _PRESENT else None, bool(flags & _INLINE))
        if first == _JSON_START:
            return _JSON_DECODER.decode(value)
    except (LayoutError, struct.error, UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChangelogFormatError(f"changelog value of {len(value)} bytes (format byte {first:#04x}): {exc}") from exc
    raise ChangelogFormatError(
        f"changelog value of {len(value)} bytes starts with {first:#04x}: expected {VERSION_FORMAT:#04x} (a version), "
        f"{SIDE_FORMAT:#04x} (a side entry) or '{{' (a JSON version of streamscore before 2026-12-06)"
    )
