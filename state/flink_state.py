"""`FlinkVersionedState`: versioned state of the *current key* of a PyFlink keyed function.

Flink owns the storage (RocksDB state backend), checkpoints and restores, and the atomicity of an
operator's state updates; this adapter only lays versioned state out on two Flink keyed states:

ONE `ValueState` of bytes per key holds everything: the key's head (latest version and its record, the
retained range, the event-time watermark; layout in `state._records`) and the records of the older retained
versions, oldest first, as a msgpack pair. One state read and one write per put: in PyFlink thread mode each
state call crosses into the JVM, and a head + MapState layout (six calls per put) measured ~6x slower
end to end (`benchmarks/job_bench.py`, `StateOnly` variant). History must be bounded
(`retention.max_versions` is required; default keep the last 16) since it is rewritten on every put;
`as_of_time` scans it from newest down when the requested time is before the latest version's event time.
The state uses `Types.PRIMITIVE_ARRAY(Types.BYTE())`, so nothing is pickled.

PyFlink must run in thread mode with the RocksDB state backend (`flink_state_configuration()`).
pyflink is imported only inside this module, and only when the adapter is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import msgspec

from state._records import (
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


class FlinkVersionedState(Generic[T]):
    """`VersionedState` of the current key of a PyFlink `KeyedProcessFunction` (or other keyed function).

    Construct it in the function's `open(runtime_context)` (or lazily, before the first access); `name`
    names the Flink state (`<name>/versions`), so one function can hold several versioned states. `codec`
    defaults to `MsgpackCodec()`; `retention` must bound the number of versions (`max_versions`).
    Every call acts on the key of the element being processed.
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
        from pyflink.datastream.state import ValueStateDescriptor

        self._name = name
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        self._state = runtime_context.get_state(
            ValueStateDescriptor(f"{name}/versions", Types.PRIMITIVE_ARRAY(Types.BYTE()))
        )
        _pass_bytes_through(self._state, "_value_converter")
        self._last_written: StateVersion[T] | None = None
        self._caching = False
        self._cached: tuple[Head, list[bytes]] | None = _UNREAD

    def begin_element(self) -> None:
        """Start a new element: the state read once during it is reused by the element's later calls.

        Call it before each element the keyed function processes (the current key may change between
        elements, never during one). Without it, every call reads the state from Flink.
        """
        self._caching = True
        self._cached = _UNREAD

    @property
    def name(self) -> str:
        """The name of the Flink state."""
        return self._name

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        return self._retention

    def get(self) -> StateVersion[T] | None:
        """The latest version of the current key, or None."""
        current = self._read()
        return None if current is None else self._decode(current[0].latest, current[0].record)

    def put(self, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version for the current key; returns its version number."""
        check_event_time(event_time)
        record = encode_record(event_time, source, self._codec.encode(value))
        current = self._read(include_deleted=True)
        head, older = current if current is not None else (None, [])
        live = head is not None and not head.deleted

        def read_event_time(version: int) -> int:
            assert head is not None
            return self._record_time(version, older[version - head.oldest])

        plan = plan_put(head, event_time, self._retention, read_event_time)
        kept: list[bytes] = []
        if live:
            assert head is not None
            kept = [*older, head.record][plan.oldest - head.oldest :]
        new_head = Head(
            plan.version, event_time, plan.oldest, plan.oldest_event_time, plan.max_event_time, record
        )
        self._state.update(_BLOB_ENCODER.encode((encode_head(new_head), kept)))
        self._cached = (new_head, kept) if self._caching else _UNREAD
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
        head, older = current
        if not head.oldest <= version <= head.latest:
            return None
        if version == head.latest:
            return self._decode(version, head.record)
        return self._decode(version, self._retained_record(head, older, version))

    def as_of_time(self, event_time: int) -> StateVersion[T] | None:
        """The highest retained version with event time <= `event_time`, or None (scans the history)."""
        check_event_time(event_time)
        current = self._read()
        if current is None:
            return None
        head, older = current
        if event_time >= head.latest_event_time:
            return self._decode(head.latest, head.record)
        for version in range(head.latest - 1, head.oldest - 1, -1):
            raw = self._retained_record(head, older, version)
            if self._record_time(version, raw) <= event_time:
                return self._decode(version, raw)
        return None

    def history(self, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of the current key, newest first."""
        check_limit(limit)
        current = self._read()
        if current is None or limit == 0:
            return []
        head, older = current
        result = [self._decode(head.latest, head.record)]
        for version in range(head.latest - 1, max(head.oldest, head.latest - limit + 1) - 1, -1):
            result.append(self._decode(version, self._retained_record(head, older, version)))
        return result

    def clear(self) -> None:
        """Remove every version of the current key; its version counter is kept."""
        current = self._read()
        if current is None:
            return
        self._state.update(_BLOB_ENCODER.encode((encode_head(deleted_head(current[0].latest)), [])))
        self._cached = _UNREAD

    def stored_versions(self) -> int:
        """How many versions of the current key are physically stored (a diagnostic for retention)."""
        current = self._read()
        return 0 if current is None else len(current[1]) + 1

    # -- helpers -----------------------------------------------------------------------------------

    def _read(self, *, include_deleted: bool = False) -> tuple[Head, list[bytes]] | None:
        current = self._cached if self._cached is not _UNREAD else self._read_from_flink()
        if self._caching:
            self._cached = current
        if current is None or (current[0].deleted and not include_deleted):
            return None
        return current

    def _read_from_flink(self) -> tuple[Head, list[bytes]] | None:
        raw = self._state.value()
        if raw is None:
            return None
        try:
            head_bytes, older = _BLOB_DECODER.decode(raw)
            head = decode_head(head_bytes)
        except HeadFormatMismatch as exc:
            raise IncompatibleStateError(
                f"Flink state {self._name!r}", found=f"key header format {exc.found}",
                expected="the format of this streamscore version",
                remedy="Start the job without restoring this operator's state, or run "
                "`streamscore state migrate` on the savepoint",
            ) from exc
        except (RecordFormatError, msgspec.DecodeError) as exc:
            raise CorruptStateError(CURRENT_KEY, None, str(exc)) from exc
        return head, older

    def _retained_record(self, head: Head, older: list[bytes], version: int) -> bytes:
        index = version - head.oldest
        if not 0 <= index < len(older):
            raise CorruptStateError(
                CURRENT_KEY, version, f"record missing; versions {head.oldest}..{head.latest} are retained"
            )
        return older[index]

    def _record_time(self, version: int, raw: bytes) -> int:
        try:
            return record_event_time(raw)
        except RecordFormatError as exc:
            raise CorruptStateError(CURRENT_KEY, version, str(exc)) from exc

    def _decode(self, version: int, raw: bytes) -> StateVersion[T]:
        try:
            record = decode_record(raw)
            value = self._codec.decode(record.payload)
        except (RecordFormatError, StateDecodeError) as exc:
            raise CorruptStateError(CURRENT_KEY, version, str(exc)) from exc
        return StateVersion(version, record.event_time, value, record.source)

    def __repr__(self) -> str:
        return f"FlinkVersionedState({self._name!r}, retention={self._retention})"


_BLOB_ENCODER = msgspec.msgpack.Encoder()
_BLOB_DECODER = msgspec.msgpack.Decoder(tuple[bytes, list[bytes]])
