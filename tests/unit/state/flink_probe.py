"""Runs inside the PyFlink job of `test_state_flink.py` (and, for the reference, in the test itself).

`observe` applies one operation to a versioned state and reads it back every way the contract allows;
`VersionedStateProbe` is the KeyedProcessFunction that does this on `FlinkVersionedState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np
from pyflink.datastream import KeyedProcessFunction, RuntimeContext

from state import MsgpackCodec, RetentionPolicy, SourceCoordinates, VersionedState
from state.flink_state import FlinkVersionedState

#: The two retentions the probe exercises: a short one with a horizon, and the default (last 16).
SHORT = RetentionPolicy(max_versions=3, horizon_ms=40)
DEFAULT = RetentionPolicy(max_versions=16)


class Value(msgspec.Struct):
    """A typed state value with a float32 vector."""

    n: int
    hidden: np.ndarray


def _builtins(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"dtype": str(obj.dtype), "data": obj.tolist()}
    raise NotImplementedError(type(obj))


def observe(
    state: VersionedState[Value], clear: Callable[[], None], op: str, n: int, event_time: int, offset: int
) -> Any:
    """Apply `op` ("put", "clear" or "forget") and return everything the state answers afterwards (plain data)."""
    if op in ("clear", "forget"):
        clear() if op == "clear" else state.forget()
        result: dict[str, Any] = {"op": op, "get": state.get(), "hist": state.history(4)}
    else:
        value = Value(n, np.full(3, n / 4, dtype=np.float32))
        version = state.put(value, event_time=event_time, source=SourceCoordinates("probe", 0, offset))
        result = {
            "op": op,
            "v": version,
            "get": state.get(),
            "prev": state.as_of(version - 1),
            "old": state.as_of(version - 4),
            "t": state.as_of_time(event_time),
            "t_early": state.as_of_time(event_time - 7),
            "t_late": state.as_of_time(event_time + 3),
            "hist": state.history(4),
        }
    return msgspec.to_builtins(result, enc_hook=_builtins)


class VersionedStateProbe(KeyedProcessFunction):
    """For each (index, key, op, n, event_time), observes two FlinkVersionedStates; emits JSON lines."""

    def open(self, runtime_context: RuntimeContext) -> None:
        codec = MsgpackCodec(Value)
        self.short = FlinkVersionedState(runtime_context, "short", codec, retention=SHORT)
        self.default = FlinkVersionedState(runtime_context, "default", codec, retention=DEFAULT)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        index, key, op, n, event_time = value
        self.short.begin_element()  # `short` reuses one read per element (as the job does); `default` never
        line = {
            "index": index,
            "key": key,
            "short": observe(self.short, self.short.clear, op, n, event_time, index),
            "default": observe(self.default, self.default.clear, op, n, event_time, index),
        }
        # versions physically kept in the Flink state (must match the retained range, no leaks)
        line["short_stored"] = max(0, self.short.stored_versions() - 1)
        if index == 0:  # where the state really lives: Python state wrapper and Java state class
            head = self.short._head
            line["runtime"] = [type(head).__module__, head._state.getClass().getName()]
        yield msgspec.json.encode(line).decode()


def legacy_blob(versions: list[tuple[int, int]]) -> bytes:
    """The earlier one-blob layout (`<name>/versions`) holding `versions` [(n, event_time)], numbered from 1."""
    from state._legacy import Head, encode_head, encode_record

    codec = MsgpackCodec(Value)
    records = [
        encode_record(t, SourceCoordinates("probe", 0, i), codec.encode(Value(n, np.full(3, n / 4, dtype=np.float32))))
        for i, (n, t) in enumerate(versions)
    ]
    latest_time = versions[-1][1]
    head = Head(len(versions), latest_time, 1, versions[0][1], max(t for _, t in versions), records[-1])
    return msgspec.msgpack.encode((encode_head(head), records[:-1]))


class LegacyLayoutProbe(KeyedProcessFunction):
    """Writes each key in the earlier blob layout, then reads and extends it through `FlinkVersionedState`."""

    def open(self, runtime_context: RuntimeContext) -> None:
        from pyflink.common.typeinfo import Types
        from pyflink.datastream.state import ValueStateDescriptor

        from state.flink_state import _pass_bytes_through

        self.legacy = runtime_context.get_state(
            ValueStateDescriptor("short/versions", Types.PRIMITIVE_ARRAY(Types.BYTE()))
        )
        _pass_bytes_through(self.legacy, "_value_converter")
        self.state = FlinkVersionedState(runtime_context, "short", MsgpackCodec(Value), retention=SHORT)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        key, op, n, event_time = value
        if op == "legacy":
            self.legacy.update(legacy_blob([(i, event_time + i) for i in range(1, n + 1)]))
            yield msgspec.json.encode({"key": key, "op": op}).decode()
            return
        line = {"key": key, "op": op, "seen": observe(self.state, self.state.clear, op, n, event_time, 99)}
        line["legacy_left"] = self.legacy.value() is not None
        yield msgspec.json.encode(line).decode()
