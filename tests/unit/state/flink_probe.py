"""Runs inside the PyFlink jobs of `test_flink.py` (and, for the reference, in the test itself).

`observe` applies one operation to a versioned state and reads it back every way the contract allows;
`VersionedStateProbe` is the KeyedProcessFunction that does this on `FlinkVersionedState`; `Layout1Probe` writes
keys with the layout-1 writer (the adapter of 5043d14, reduced to its put) and then continues them through the
new adapter; `CountingProbe` counts the state calls each element makes.
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
#: What `retain` operations switch the short state to (a longer ring, then a shorter one: reslots).
RETAIN = {5: RetentionPolicy(max_versions=5, horizon_ms=40), 2: RetentionPolicy(max_versions=2, horizon_ms=40)}
#: The side entries every observation reads.
SIDE_NAMES = ("s0", "s1", "s2")


class Value(msgspec.Struct):
    """A typed state value with a float32 vector."""

    n: int
    hidden: np.ndarray


def value_of(n: int) -> Value:
    """The probe's value for `n`."""
    return Value(n, np.full(3, n / 4, dtype=np.float32))


def _builtins(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"dtype": str(obj.dtype), "data": obj.tolist()}
    raise NotImplementedError(type(obj))


def observe(
    state: VersionedState[Value], clear: Callable[[], None], op: str, n: int, event_time: int, offset: int
) -> Any:
    """Apply `op` ("put", "clear", "forget", "side" or "retain") and return everything the state answers
    afterwards (plain data). "side" sets entry `s{n % 3}` (inline when n is even; removed when n % 5 == 0)."""
    if op == "put":
        version = state.put(value_of(n), event_time=event_time, source=SourceCoordinates("probe", 0, offset))
        result: dict[str, Any] = {
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
    else:
        if op == "clear":
            clear()
        elif op == "forget":
            state.forget()
        elif op == "side":
            value = None if n % 5 == 0 else f"side-{n}".encode()
            state.put_side(SIDE_NAMES[n % 3], value, inline=n % 2 == 0)
        result = {"op": op, "get": state.get(), "hist": state.history(4)}
    result["sides"] = [state.side(name) for name in SIDE_NAMES]
    return msgspec.to_builtins(result, enc_hook=_builtins)


class VersionedStateProbe(KeyedProcessFunction):
    """For each (index, key, op, n, event_time), observes two FlinkVersionedStates; emits JSON lines.

    `short` is used as the job uses its state (the key named, a cache of 2 heads so that most elements reload
    from Flink, a flush per element); `default` without a key, so every call goes to Flink.
    """

    def open(self, runtime_context: RuntimeContext) -> None:
        self.context = runtime_context
        self.codec = MsgpackCodec(Value)
        self.short = FlinkVersionedState(runtime_context, "short", self.codec, retention=SHORT, cache_keys=2)
        self.default = FlinkVersionedState(runtime_context, "default", self.codec, retention=DEFAULT)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        index, key, op, n, event_time = value
        if op == "retain":  # the job "restarted" with another retention: a new adapter, an empty cache
            self.short = FlinkVersionedState(self.context, "short", self.codec, retention=RETAIN[n], cache_keys=2)
        self.short.set_current_key(key)
        self.default.set_current_key(None)
        line = {
            "index": index,
            "key": key,
            "short": observe(self.short, self.short.clear, op, n, event_time, index),
            "default": observe(self.default, self.default.clear, op, n, event_time, index),
        }
        self.short.flush()
        # records physically kept in the Flink state (no leak beyond the ring)
        line["short_stored"] = self.short.stored_versions()
        if index == 0:  # where the state really lives: Python state wrapper and Java state class
            slots = self.short._slots
            line["runtime"] = [type(slots).__module__, slots._state.getClass().getName()]
        yield msgspec.json.encode(line).decode()


class Layout1Writer:
    """The layout-1 adapter of 5043d14 (`git show 5043d14:state/flink_state.py`) reduced to its put: writes
    `<name>/head` (msgpack (head, stored_from, older times)) and appends `<name>/history`, compacting lazily."""

    def __init__(self, runtime_context: RuntimeContext, name: str, codec: MsgpackCodec[Any],
                 retention: RetentionPolicy) -> None:
        from pyflink.common.typeinfo import Types
        from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

        from state.flink_state import _pass_bytes_through, _pass_list_of_bytes_through

        byte_array = Types.PRIMITIVE_ARRAY(Types.BYTE())
        self.head = runtime_context.get_state(ValueStateDescriptor(f"{name}/head", byte_array))
        self.history = runtime_context.get_list_state(ListStateDescriptor(f"{name}/history", byte_array))
        _pass_bytes_through(self.head, "_value_converter")
        _pass_list_of_bytes_through(self.history)
        self.codec = codec
        self.retention = retention
        assert retention.max_versions is not None
        self.max_stored = retention.max_versions + max(retention.max_versions, 8)

    def put(self, value: Any, *, event_time: int, source: SourceCoordinates | None) -> int:
        """One layout-1 put (as the old adapter did it)."""
        from state._legacy import Head, decode_head, encode_head, encode_record, plan_put

        record = encode_record(event_time, source, self.codec.encode(value))
        raw = self.head.value()
        if raw is None:
            plan = plan_put(None, event_time, self.retention, _unused)
            stored_from, times = plan.version, []
        else:
            head_bytes, stored_from, older = msgspec.msgpack.decode(raw, type=tuple[bytes, int, list[int]])
            head = decode_head(head_bytes)
            plan = plan_put(head, event_time, self.retention, lambda v: older[v - head.oldest])
            if plan.keep_previous:
                self.history.add(head.record)
                times = [*older, head.latest_event_time][plan.oldest - head.oldest:]
                if plan.version - stored_from > self.max_stored:
                    self.history.update(list(self.history.get())[plan.oldest - stored_from:])
                    stored_from = plan.oldest
            else:
                if head.latest > stored_from:
                    self.history.clear()
                stored_from, times = plan.version, []
        new_head = Head(plan.version, event_time, plan.oldest, plan.oldest_event_time, plan.max_event_time, record)
        self.head.update(msgspec.msgpack.encode((encode_head(new_head), stored_from, times)))
        return plan.version


def _unused(version: int) -> int:
    raise AssertionError(f"a first put reads no older version ({version})")


class Layout1Probe(KeyedProcessFunction):
    """(key, op, n, event_time): "layout1" puts n versions with the layout-1 writer (event times event_time + i,
    values i); any other op goes through `observe` on the new adapter, which converts the key on first touch."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.writer = Layout1Writer(runtime_context, "short", MsgpackCodec(Value), SHORT)
        self.state = FlinkVersionedState(runtime_context, "short", MsgpackCodec(Value), retention=SHORT)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        key, op, n, event_time = value
        if op == "layout1":
            for i in range(1, n + 1):
                self.writer.put(value_of(i), event_time=event_time + i, source=SourceCoordinates("probe", 0, i - 1))
            yield msgspec.json.encode({"key": key, "op": op}).decode()
            return
        self.state.set_current_key(key)
        line = {"key": key, "op": op, "seen": observe(self.state, self.state.clear, op, n, event_time, 99)}
        self.state.flush()
        line["layout1_left"] = self.writer.head.value() is not None or bool(list(self.writer.history.get()))
        yield msgspec.json.encode(line).decode()


class _Counted:
    """A Flink state whose method calls are counted in `counts` (one JVM crossing each)."""

    def __init__(self, state: Any, counts: dict[str, int], name: str) -> None:
        self._state = state
        self._counts = counts
        self._name = name

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._state, method)
        if not callable(target):
            return target

        def counted(*args: Any) -> Any:
            call = f"{self._name}.{method}"
            self._counts[call] = self._counts.get(call, 0) + 1
            return target(*args)

        return counted


def count_state_calls(adapter: Any, counts: dict[str, int]) -> None:
    """Wrap every thread-mode Flink state `adapter` holds so that its calls are counted in `counts`."""
    for attribute, state in list(vars(adapter).items()):
        if ".embedded." in type(state).__module__:
            setattr(adapter, attribute, _Counted(state, counts, attribute.strip("_")))


class CountingProbe(KeyedProcessFunction):
    """(key, n, event_time): what the risk operator does per event (get, an inline side entry, put), then
    flush; emits the element's state calls {state.method: count}."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = FlinkVersionedState(runtime_context, "short", MsgpackCodec(Value), retention=SHORT)
        self.counts: dict[str, int] = {}
        count_state_calls(self.state, self.counts)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        key, n, event_time = value
        self.counts.clear()
        self.state.set_current_key(key)
        self.state.get()
        self.state.put_side("ids", n.to_bytes(4, "big"), inline=True)
        self.state.put(value_of(n), event_time=event_time, source=SourceCoordinates("probe", 0, n))
        self.state.flush()
        yield msgspec.json.encode({"key": key, "n": n, "calls": self.counts}).decode()
