"""What the buffered operator's Python half returns to its Java half per buffer: two byte strings, not object lists.

Returning Python lists made pemja convert every element into a Java object (a JNI call or more per string, number
and byte array: ~15 elements per risk event across the output rows and state writes), and turned each result's
JSON from bytes into a Python str and a Java String before the Kafka sink encoded it back. Two flat byte strings
cross in one copy each; Java reads them with a `ByteBuffer` (`BufferedPythonOperator.applyRows/applyWrites`).

Rows (in output order), each: `>B` tag (0 result, 1 dead letter, 2 changelog), `>i` key length (-1: no key),
`>i` value length (-1: null), the key's UTF-8 bytes, the value bytes.

State writes (`buffer_state.BufferStates.take_writes`'s flat `(key, code, a, b)` list), each: `>i` key length,
`>B` code, the key's UTF-8 bytes, then by code: HEAD_PUT `>i`+bytes; SLOT_PUT `>q` slot, `>i`+bytes; SIDE_PUT
`>i`+UTF-8 name, `>i`+bytes; SIDE_REMOVE `>i`+UTF-8 name; TIMER `>q` time; the clears nothing more.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from pipelines.runtimes.flink.buffer_state import HEAD_PUT, SIDE_PUT, SIDE_REMOVE, SLOT_PUT, TIMER

RESULT, DEAD_LETTER, CHANGELOG = 0, 1, 2

_ROW = struct.Struct(">Bii")
_OP = struct.Struct(">iB")
_LEN = struct.Struct(">i")
_LONG = struct.Struct(">q")
_LONG_LEN = struct.Struct(">qi")


class RowWriter:
    """The output rows of one call, packed as they are added."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def add(self, tag: int, key: str | None, value: bytes | None) -> None:
        """One row: `key` None for no key, `value` None for a null value (a changelog tombstone)."""
        parts = self._parts
        if key is None:
            parts.append(_ROW.pack(tag, -1, -1 if value is None else len(value)))
        else:
            encoded = key.encode()
            parts.append(_ROW.pack(tag, len(encoded), -1 if value is None else len(value)))
            parts.append(encoded)
        if value:
            parts.append(value)

    def take(self) -> bytes:
        """The packed rows (and start over)."""
        packed = b"".join(self._parts)
        self._parts.clear()
        return packed


def pack_writes(ops: Sequence[Any]) -> bytes:
    """The flat `(key, code, a, b)` state writes, packed (module docstring)."""
    parts: list[bytes] = []
    append = parts.append
    for i in range(0, len(ops), 4):
        key, code, a, b = ops[i], ops[i + 1], ops[i + 2], ops[i + 3]
        encoded = key.encode()
        append(_OP.pack(len(encoded), code))
        append(encoded)
        if code == SLOT_PUT:
            append(_LONG_LEN.pack(a, len(b)))
            append(b)
        elif code == HEAD_PUT:
            append(_LEN.pack(len(a)))
            append(a)
        elif code == SIDE_PUT:
            name = a.encode()
            append(_LEN.pack(len(name)))
            append(name)
            append(_LEN.pack(len(b)))
            append(b)
        elif code == SIDE_REMOVE:
            name = a.encode()
            append(_LEN.pack(len(name)))
            append(name)
        elif code == TIMER:
            append(_LONG.pack(a))
    return b"".join(parts)
