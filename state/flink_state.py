"""`FlinkVersionedState`: versioned state of the *current key* of a PyFlink keyed function.

Flink owns the storage (RocksDB state backend), checkpoints and restores, and the atomicity of an
operator's state updates; this adapter only lays versioned state out on two Flink keyed states per key:

- `<name>/head`, a `ValueState` of bytes: the key's head (latest version and its record, the retained range,
  the event-time watermark; layout in `state._records`), the first version physically kept in the history
  list, and the event times of the retained older versions (so retention never reads the history);
- `<name>/history`, a `ListState` of bytes: the records of older versions, oldest first, each appended once
  when a newer version supersedes it (RocksDB appends with a merge, without reading the list).

A put costs one head read (shared with the operator's `get`, see `begin_element`), one head write and one
list append, whatever the history length: in PyFlink thread mode every state call crosses into the JVM, and
the bytes moved per event stay near one version's size. Retention is applied to the head at once (reads
never see a pruned version) and to the list lazily: once it holds more than `max_versions` + slack records,
one put reads it and keeps the retained ones, so the list never exceeds about twice the retention. History
must be bounded (`retention.max_versions` is required; default keep the last 16). Only `as_of`, `as_of_time`
and `history` read the list. The states use `Types.PRIMITIVE_ARRAY(Types.BYTE())`, so nothing is pickled.

State written by the earlier layout (one `<name>/versions` blob per key holding head and history, before
2026-12) is converted per key, the first time the key is read after a restore.

PyFlink must run in thread mode with the RocksDB state backend (`flink_state_configuration()`).
pyflink is imported only inside this module, and only when the adapter is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, overload

import msgspec

from state._legacy import (
    Head,
    HeadFormatMismatch,
    RecordFormatError,
    decode_head,
    decode_record,
    deleted_head,
    encode_head,
    encode_record,
    plan_put,
    record_event_time,
)
from state.codec import Codec, MsgpackCodec
from state.contract import (
    DEFAULT_RETENTION,
    RetentionPolicy,
    SourceCoordinates,
    StateVersion,
    check_event_time,
    check_limit,
)
from state.exceptions import CorruptStateError, IncompatibleStateError, StateDecodeError, StateError

if TYPE_CHECKING:
    from pyflink.datastream import RuntimeContext

T = TypeVar("T")

#: The key named in `CorruptStateError`s (Flink does not expose the current key to the state).
CURRENT_KEY = "<current Flink key>"

_UNREAD: Any = object()  # the per-element read cache holds nothing yet


def flink_state_configuration() -> dict[str, str]:
    """The Flink configuration entries this adapter is written and tested for."""
    return {"python.execution-mode": "thread", "state.backend.type": "rocksdb"}


class _BytesPassThrough:
    """Stands in for PyFlink's thread-mode `ArrayDataConverter` on byte-array states.

    In PyFlink 2.2 thread mode, `PRIMITIVE_ARRAY(BYTE())` state goes through `ArrayDataConverter`,
    which turns `bytes` into a tuple of ints (the Java side then fails with a ClassCastException to
    `byte[]`) and fails on an empty state (`tuple(None)`). Pemja converts Python `bytes` to and from
    Java `byte[]` natively, so passing the value through unchanged is the correct conversion.
    """

    def to_internal(self, value: Any) -> bytes | None:
        """Java value -> Python value."""
        return None if value is None else bytes(value)

    def to_external(self, value: Any) -> Any:
        """Python value -> Java value."""
        return value


def _pass_bytes_through(state: Any, attribute: str) -> None:
    converter = getattr(state, attribute, None)
    if converter is not None and type(converter).__name__ == "ArrayDataConverter":
        setattr(state, attribute, _BytesPassThrough())
    elif converter is None and ".embedded." in type(state).__module__:
        raise StateError(
            f"cannot set up byte-array Flink state: thread-mode state {type(state).__qualname__} has no "
            f"{attribute!r} converter (expected with apache-flink 2.2); check the PyFlink version"
        )


class _ListOfBytesPassThrough:
    """`_BytesPassThrough` for list states: Java `List<byte[]>` <-> Python list of bytes."""

    def to_internal(self, value: Any) -> list[bytes] | None:
        """Java value -> Python value."""
        return None if value is None else [bytes(item) for item in value]

    def to_external(self, value: Any) -> Any:
        """Python value -> Java value."""
        return value


def _pass_list_of_bytes_through(state: Any) -> None:
    if ".embedded." not in type(state).__module__:
        return
    if not hasattr(state, "_element_converter") or not hasattr(state, "_value_converter"):
        raise StateError(
            f"cannot set up byte-array Flink list state: thread-mode state {type(state).__qualname__} has no "
            "element/value converters (expected with apache-flink 2.2); check the PyFlink version"
        )
    state._element_converter = _BytesPassThrough()
    state._value_converter = _ListOfBytesPassThrough()


class _KeyState(NamedTuple):
    """What `<name>/head` holds for the current key."""

    head: Head
    #: The version of the first record in `<name>/history` (records run from it to `head.latest - 1`).
    stored_from: int
    #: Event times of the retained older versions `head.oldest .. head.latest - 1`.
    older_times: list[int]


class FlinkVersionedState(Generic[T]):
    """`VersionedState` of the current key of a PyFlink `KeyedProcessFunction` (or other keyed function).

    Construct it in the function's `open(runtime_context)` (or lazily, before the first access); `name`
    names the Flink states (`<name>/head`, `<name>/history`), so one function can hold several versioned
    states. `codec` defaults to `MsgpackCodec()`; `retention` must bound the number of versions
    (`max_versions`). Every call acts on the key of the element being processed.
    """

    @overload
    def __init__(
        self: FlinkVersionedState[Any],
        runtime_context: RuntimeContext,
        name: str,
        codec: None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> None: ...

    @overload
    def __init__(
        self,
        runtime_context: RuntimeContext,
        name: str,
        codec: Codec[T],
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> None: ...

    def __init__(
        self,
        runtime_context: RuntimeContext,
        name: str,
        codec: Codec[Any] | None = None,
        *,
        retention: RetentionPolicy = DEFAULT_RETENTION,
    ) -> None:
        if retention.max_versions is None:
            raise ValueError(
                "FlinkVersionedState needs a bounded history: give RetentionPolicy(max_versions=N), "
                f"got {retention}"
            )
        from pyflink.common.typeinfo import Types
        from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

        self._name = name
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        self._max_stored = retention.max_versions + max(retention.max_versions, MIN_SLACK)
        byte_array = Types.PRIMITIVE_ARRAY(Types.BYTE())
        self._head = runtime_context.get_state(ValueStateDescriptor(f"{name}/head", byte_array))
        self._history = runtime_context.get_list_state(ListStateDescriptor(f"{name}/history", byte_array))
        self._legacy = runtime_context.get_state(ValueStateDescriptor(f"{name}/versions", byte_array))
        _pass_bytes_through(self._head, "_value_converter")
        _pass_bytes_through(self._legacy, "_value_converter")
        _pass_list_of_bytes_through(self._history)
        self._last_written: StateVersion[T] | None = None
        self._caching = False
        self._cached: _KeyState | None = _UNREAD

    def begin_element(self) -> None:
        """Start a new element: the head read once during it is reused by the element's later calls.

        Call it before each element the keyed function processes (the current key may change between
        elements, never during one). Without it, every call reads the head from Flink.
        """
        self._caching = True
        self._cached = _UNREAD

    @property
    def name(self) -> str:
        """The name prefix of the Flink states."""
        return self._name

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        return self._retention

    def get(self) -> StateVersion[T] | None:
        """The latest version of the current key, or None."""
        current = self._read()
        return None if current is None else self._decode(current.head.latest, current.head.record)

    def put(self, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version for the current key; returns its version number."""
        check_event_time(event_time)
        record = encode_record(event_time, source, self._codec.encode(value))
        current = self._read(include_deleted=True)
        if current is None or current.head.deleted:
            plan = plan_put(None if current is None else current.head, event_time, self._retention, _no_history)
            stored_from, times = plan.version, []
        else:
            head, stored_from = current.head, current.stored_from
            older = current.older_times
            plan = plan_put(head, event_time, self._retention, lambda version: older[version - head.oldest])
            if plan.keep_previous:
                self._history.add(head.record)
                times = [*older, head.latest_event_time][plan.oldest - head.oldest :]
                if plan.version - stored_from > self._max_stored:
                    self._compact(stored_from, plan.oldest)
                    stored_from = plan.oldest
            else:  # retention dropped every older version
                if head.latest > stored_from:
                    self._history.clear()
                stored_from, times = plan.version, []
        new_head = Head(
            plan.version, event_time, plan.oldest, plan.oldest_event_time, plan.max_event_time, record
        )
        written = _KeyState(new_head, stored_from, times)
        self._head.update(_encode_key_state(written))
        self._cached = written if self._caching else _UNREAD
        self._last_written = StateVersion(plan.version, event_time, value, source)
        return plan.version

    @property
    def last_written(self) -> StateVersion[T] | None:
        """The version the latest `put` wrote (any key), without reading the state back."""
        return self._last_written

    def as_of(self, version: int) -> StateVersion[T] | None:
        """The current key exactly at `version`, or None."""
        current = self._read()
        if current is None:
            return None
        head = current.head
        if not head.oldest <= version <= head.latest:
            return None
        if version == head.latest:
            return self._decode(version, head.record)
        return self._decode(version, self._stored_record(current, self._stored(), version))

    def as_of_time(self, event_time: int) -> StateVersion[T] | None:
        """The highest retained version with event time <= `event_time`, or None (scans the history)."""
        check_event_time(event_time)
        current = self._read()
        if current is None:
            return None
        head = current.head
        if event_time >= head.latest_event_time:
            return self._decode(head.latest, head.record)
        for version in range(head.latest - 1, head.oldest - 1, -1):
            if current.older_times[version - head.oldest] <= event_time:
                return self._decode(version, self._stored_record(current, self._stored(), version))
        return None

    def history(self, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of the current key, newest first."""
        check_limit(limit)
        current = self._read()
        if current is None or limit == 0:
            return []
        head = current.head
        result = [self._decode(head.latest, head.record)]
        oldest = max(head.oldest, head.latest - limit + 1)
        if oldest < head.latest:
            stored = self._stored()
            for version in range(head.latest - 1, oldest - 1, -1):
                result.append(self._decode(version, self._stored_record(current, stored, version)))
        return result

    def clear(self) -> None:
        """Remove every version of the current key; its version counter is kept."""
        current = self._read()
        if current is None:
            return
        latest = current.head.latest
        self._history.clear()
        self._head.update(_encode_key_state(_KeyState(deleted_head(latest), latest + 1, [])))
        self._cached = _UNREAD

    def forget(self) -> None:
        """Remove every version of the current key and its version counter: nothing of it stays in Flink's
        state, and its next put is version 1 (an expired key)."""
        self._head.clear()
        self._history.clear()
        self._legacy.clear()
        self._cached = None if self._caching else _UNREAD

    def newest_event_time(self) -> int | None:
        """The event time of the current key's latest version (None without state): what cleanup checks."""
        current = self._read()
        return None if current is None else current.head.latest_event_time

    def stored_versions(self) -> int:
        """How many versions of the current key are physically stored (a diagnostic for retention: at most
        about twice `max_versions`, since the history list is pruned lazily)."""
        current = self._read()
        return 0 if current is None else len(self._stored()) + 1

    # -- helpers -----------------------------------------------------------------------------------

    def _compact(self, stored_from: int, oldest: int) -> None:
        """Keep only the records of versions >= `oldest` in the history list."""
        self._history.update(self._stored()[oldest - stored_from :])

    def _stored(self) -> list[bytes]:
        return list(self._history.get())

    def _read(self, *, include_deleted: bool = False) -> _KeyState | None:
        current = self._cached if self._cached is not _UNREAD else self._read_from_flink()
        if self._caching:
            self._cached = current
        if current is None or (current.head.deleted and not include_deleted):
            return None
        return current

    def _read_from_flink(self) -> _KeyState | None:
        raw = self._head.value()
        if raw is None:
            return self._convert_legacy()
        try:
            head_bytes, stored_from, older_times = _HEAD_DECODER.decode(raw)
            return _KeyState(self._decode_head(head_bytes), stored_from, older_times)
        except (RecordFormatError, msgspec.DecodeError) as exc:
            raise CorruptStateError(CURRENT_KEY, None, str(exc)) from exc

    def _convert_legacy(self) -> _KeyState | None:
        """Move a key written in the earlier one-blob layout (`<name>/versions`) to this layout."""
        raw = self._legacy.value()
        if raw is None:
            return None
        try:
            head_bytes, older = _LEGACY_DECODER.decode(raw)
            head = self._decode_head(head_bytes)
            times = [record_event_time(record) for record in older]
        except (RecordFormatError, msgspec.DecodeError) as exc:
            raise CorruptStateError(CURRENT_KEY, None, f"earlier state layout: {exc}") from exc
        converted = _KeyState(head, head.oldest if not head.deleted else head.latest + 1, times)
        if older:
            self._history.update(older)
        self._head.update(_encode_key_state(converted))
        self._legacy.clear()
        return converted

    def _decode_head(self, head_bytes: bytes) -> Head:
        try:
            return decode_head(head_bytes)
        except HeadFormatMismatch as exc:
            raise IncompatibleStateError(
                f"Flink state {self._name!r}", found=f"key header format {exc.found}",
                expected="the format of this streamscore version",
                remedy="Start the job without restoring this operator's state, or run "
                "`streamscore state migrate` on the savepoint",
            ) from exc

    def _stored_record(self, current: _KeyState, stored: list[bytes], version: int) -> bytes:
        index = version - current.stored_from
        if not 0 <= index < len(stored):
            raise CorruptStateError(
                CURRENT_KEY, version,
                f"record missing; versions {current.head.oldest}..{current.head.latest} are retained and "
                f"{len(stored)} records are stored from version {current.stored_from}",
            )
        return stored[index]

    def _decode(self, version: int, raw: bytes) -> StateVersion[T]:
        try:
            record = decode_record(raw)
            value = self._codec.decode(record.payload)
        except (RecordFormatError, StateDecodeError) as exc:
            raise CorruptStateError(CURRENT_KEY, version, str(exc)) from exc
        return StateVersion(version, record.event_time, value, record.source)

    def __repr__(self) -> str:
        return f"FlinkVersionedState({self._name!r}, retention={self._retention})"


#: The history list may hold this many records beyond the retention (at least) before a put prunes it.
MIN_SLACK = 8


def _no_history(version: int) -> int:
    raise AssertionError(f"a first put has no older version to read (asked for {version})")


def _encode_key_state(state: _KeyState) -> bytes:
    return _HEAD_ENCODER.encode((encode_head(state.head), state.stored_from, state.older_times))


_HEAD_ENCODER = msgspec.msgpack.Encoder()
_HEAD_DECODER = msgspec.msgpack.Decoder(tuple[bytes, int, list[int]])
_LEGACY_DECODER = msgspec.msgpack.Decoder(tuple[bytes, list[bytes]])
