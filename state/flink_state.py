"""`FlinkVersionedState`: versioned state of the *current key* of a PyFlink keyed function.

Flink owns the storage (RocksDB state backend), checkpoints and restores, and the atomicity of an
operator's state updates; this adapter only lays versioned state out on two Flink keyed states:

* a `ValueState` of bytes holding the key's head: latest version and its record (event time, source,
  encoded value), the retained range and the key's event-time watermark (layout: `state._records`);
* a `MapState[int, bytes]` holding the records of the older retained versions, keyed by version.

Both use `Types.PRIMITIVE_ARRAY(Types.BYTE())`, so nothing is pickled. History must be bounded
(`retention.max_versions` is required; default keep the last 16): `as_of_time` scans it from newest
down when the requested time is before the latest version's event time.

PyFlink must run in thread mode with the RocksDB state backend (`flink_state_configuration()`).
pyflink is imported only inside this module, and only when the adapter is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

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

    Construct it in the function's `open(runtime_context)`; `name` prefixes the two Flink state names
    (`<name>/head`, `<name>/history`), so one function can hold several versioned states. `codec`
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
        from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

        self._name = name
        self._codec: Codec[T] = codec if codec is not None else MsgpackCodec()
        self._retention = retention
        bytes_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
        self._head = runtime_context.get_state(ValueStateDescriptor(f"{name}/head", bytes_type))
        self._history = runtime_context.get_map_state(
            MapStateDescriptor(f"{name}/history", Types.LONG(), bytes_type)
        )
        _pass_bytes_through(self._head, "_value_converter")
        _pass_bytes_through(self._history, "_v_converter")

    @property
    def name(self) -> str:
        """The prefix of the Flink state names."""
        return self._name

    @property
    def retention(self) -> RetentionPolicy:
        """The retention applied on every put."""
        return self._retention

    def get(self) -> StateVersion[T] | None:
        """The latest version of the current key, or None."""
        head = self._read_head()
        return None if head is None else self._decode(head.latest, head.record)

    def put(self, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store a new version for the current key; returns its version number."""
        check_event_time(event_time)
        record = encode_record(event_time, source, self._codec.encode(value))
        head = self._read_head(include_deleted=True)
        plan = plan_put(head, event_time, self._retention, self._event_time_of)
        if head is not None and not head.deleted:
            if plan.keep_previous:
                self._history.put(head.latest, head.record)
            for version, _ in plan.pruned:
                if version != head.latest:
                    self._history.remove(version)
        new_head = Head(
            plan.version, event_time, plan.oldest, plan.oldest_event_time, plan.max_event_time, record
        )
        self._head.update(encode_head(new_head))
        return plan.version

    def as_of(self, version: int) -> StateVersion[T] | None:
        """The current key exactly at `version`, or None."""
        head = self._read_head()
        if head is None or not head.oldest <= version <= head.latest:
            return None
        if version == head.latest:
            return self._decode(version, head.record)
        return self._decode(version, self._retained_record(head, version))

    def as_of_time(self, event_time: int) -> StateVersion[T] | None:
        """The highest retained version with event time <= `event_time`, or None (scans the history)."""
        check_event_time(event_time)
        head = self._read_head()
        if head is None:
            return None
        if event_time >= head.latest_event_time:
            return self._decode(head.latest, head.record)
        for version in range(head.latest - 1, head.oldest - 1, -1):
            raw = self._retained_record(head, version)
            if self._record_time(version, raw) <= event_time:
                return self._decode(version, raw)
        return None

    def history(self, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions of the current key, newest first."""
        check_limit(limit)
        head = self._read_head()
        if head is None or limit == 0:
            return []
        result = [self._decode(head.latest, head.record)]
        for version in range(head.latest - 1, max(head.oldest, head.latest - limit + 1) - 1, -1):
            result.append(self._decode(version, self._retained_record(head, version)))
        return result

    def clear(self) -> None:
        """Remove every version of the current key; its version counter is kept."""
        head = self._read_head()
        if head is None:
            return
        self._history.clear()
        self._head.update(encode_head(deleted_head(head.latest)))

    # -- helpers -----------------------------------------------------------------------------------

    def _read_head(self, *, include_deleted: bool = False) -> Head | None:
        raw = self._head.value()
        if raw is None:
            return None
        try:
            head = decode_head(raw)
        except HeadFormatMismatch as exc:
            raise IncompatibleStateError(
                f"Flink state {self._name!r}", found=f"key header format {exc.found}",
                expected="the format of this streamscore version",
                remedy="Start the job without restoring this operator's state, or run "
                "`streamscore state migrate` on the savepoint",
            ) from exc
        except RecordFormatError as exc:
            raise CorruptStateError(CURRENT_KEY, None, str(exc)) from exc
        if head.deleted and not include_deleted:
            return None
        return head

    def _retained_record(self, head: Head, version: int) -> bytes:
        raw = self._history.get(version)
        if raw is None:
            raise CorruptStateError(
                CURRENT_KEY, version, f"record missing; versions {head.oldest}..{head.latest} are retained"
            )
        return bytes(raw)

    def _event_time_of(self, version: int) -> int:
        raw = self._history.get(version)
        if raw is None:
            raise CorruptStateError(CURRENT_KEY, version, "record missing while applying retention")
        return self._record_time(version, bytes(raw))

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
