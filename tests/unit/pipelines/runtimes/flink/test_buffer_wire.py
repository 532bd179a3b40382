"""The bytes the buffered operator's Python half hands its Java half (`buffer_wire`), read back as the Java operator
reads them (`BufferedPythonOperator.applyWrites/applyRows`): every field, in order, nothing left over."""

from __future__ import annotations

import struct
from typing import Any

from pipelines.runtimes.flink.buffer_state import (
    HEAD_CLEAR,
    HEAD_PUT,
    OLD_CLEAR,
    SIDE_PUT,
    SIDE_REMOVE,
    SIDES_CLEAR,
    SLOT_PUT,
    SLOTS_CLEAR,
    TIMER,
)
from pipelines.runtimes.flink.buffer_wire import CHANGELOG, DEAD_LETTER, RESULT, RowWriter, pack_writes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def raw(self, n: int) -> bytes:
        found = self.data[self.at:self.at + n]
        assert len(found) == n, "truncated"
        self.at += n
        return found

    @property
    def done(self) -> bool:
        return self.at == len(self.data)


def _read_writes(data: bytes) -> list[Any]:
    r, ops = _Reader(data), []
    while not r.done:
        key_length, code = r.take(">i"), r.take(">B")
        key = r.raw(key_length).decode()
        a: Any = None
        b: Any = None
        if code == HEAD_PUT:
            a = r.raw(r.take(">i"))
        elif code == SLOT_PUT:
            a = r.take(">q")
            b = r.raw(r.take(">i"))
        elif code == SIDE_PUT:
            a = r.raw(r.take(">i")).decode()
            b = r.raw(r.take(">i"))
        elif code == SIDE_REMOVE:
            a = r.raw(r.take(">i")).decode()
        elif code == TIMER:
            a = r.take(">q")
        ops += (key, code, a, b)
    return ops


def _read_rows(data: bytes) -> list[tuple[int, str | None, bytes | None]]:
    r, rows = _Reader(data), []
    while not r.done:
        tag, key_length, value_length = r.take(">B"), r.take(">i"), r.take(">i")
        key = None if key_length < 0 else r.raw(key_length).decode()
        value = None if value_length < 0 else r.raw(value_length)
        rows.append((tag, key, value))
    return rows


def test_every_state_write_reads_back_field_for_field() -> None:
    ops = [
        "acct-1", OLD_CLEAR, None, None,
        "acct-1", SLOTS_CLEAR, None, None,
        "acct-1", SLOT_PUT, 3, b"\x02record",
        "acct-1", SLOT_PUT, 2**40, b"",
        "acct-1", SIDES_CLEAR, None, None,
        "acct-1", SIDE_PUT, "ids/0", b"\x00\xff" * 300,
        "acct-1", SIDE_REMOVE, "ids/1", None,
        "accôunt-ü", HEAD_PUT, b"\x02head", None,
        "accôunt-ü", HEAD_CLEAR, None, None,
        "accôunt-ü", TIMER, 1_796_000_000_000, None,
    ]
    assert _read_writes(pack_writes(ops)) == ops
    assert pack_writes([]) == b""


def test_rows_keep_their_order_keys_and_null_values() -> None:
    writer = RowWriter()
    rows = [
        (RESULT, "acct-1", b'{"score":0.5}'),
        (DEAD_LETTER, None, '{"reason":"invalid_json","raw":"é"}'.encode()),
        (CHANGELOG, "sess-ü", b"\x01\x02"),
        (CHANGELOG, "sess-2", None),  # a tombstone
        (RESULT, "", b""),
    ]
    for tag, key, value in rows:
        writer.add(tag, key, value)
    assert _read_rows(writer.take()) == rows
    assert writer.take() == b""  # taken: the writer starts over
