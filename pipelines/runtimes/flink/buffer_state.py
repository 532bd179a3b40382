"""Flink keyed state as the buffering Java operator hands it to Python: one buffer's reads and writes.

The Java operator (`java/.../BufferedPythonOperator.java`) reads, per buffer, the head (`<name>/h2`) and the latest
version record of every key in the buffer and passes them with the records; it applies, after the Python call, the
writes Python returns. `BufferStates` stands in for the runtime context `state.flink_state.FlinkVersionedState` is
built on: its value, map and list states act on the key named by `select(key)`, read first what this buffer wrote
(an overlay per key), then what Java pre-read, and only then ask Java (`StateReader`: a side entry, an older
version, a key of an earlier layout), and collect every write in the overlay. `take_writes()` turns the overlay into
the operation list the Java operator applies: per key, clears before puts, each slot and side entry once (the
last value), the head once. So `FlinkVersionedState`'s layout code (and its conversion of earlier layouts) runs
unchanged, and the state Flink holds is byte for byte what the per-record job writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Operation codes of the Java operator (`BufferedPythonOperator`): each operation is (key, code, a, b).
HEAD_PUT = 1
HEAD_CLEAR = 2
SLOTS_CLEAR = 3
SLOT_PUT = 4
SIDES_CLEAR = 5
SIDE_PUT = 6
SIDE_REMOVE = 7
OLD_CLEAR = 8
TIMER = 9

_UNSET: Any = object()
_NO_STATE, _HAS_HEAD, _EARLIER_LAYOUT = 0, 1, 2


class _Overlay:
    """What one buffer wrote to one key (and what it knows the key holds)."""

    __slots__ = ("head", "old_cleared", "sides", "sides_cleared", "slots", "slots_cleared", "timers")

    def __init__(self) -> None:
        self.head: Any = _UNSET
        self.slots: dict[int, bytes] = {}
        self.slots_cleared = False
        self.sides: dict[str, bytes | None] = {}
        self.sides_cleared = False
        self.old_cleared = False
        self.timers: list[int] = []


class BufferStates:
    """The keyed states of one operator for the buffer being processed (see the module docstring).

    `reader` is the Java operator's `StateReader` (methods `head`, `slot`, `side`, `oldHead`, `oldHistory`,
    `oldBlob`, `slotNumbers`, each taking the key first).
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.key = ""
        self._heads: dict[str, tuple[int, bytes | None, bytes | None]] = {}
        self._overlays: dict[str, _Overlay] = {}

    def begin(
        self, keys: tuple[str, ...], heads: tuple[bytes | None, ...], latest: tuple[bytes | None, ...],
        status: tuple[int, ...],
    ) -> None:
        """Start a buffer with what Java read for its distinct `keys`: head, latest record, status (0: no state,
        1: a head, 2: state of an earlier layout)."""
        self._overlays.clear()
        self._heads = {key: (status[i], heads[i], latest[i]) for i, key in enumerate(keys)}

    def select(self, key: str) -> None:
        """The key the states act on from now."""
        self.key = key

    def overlay(self) -> _Overlay:
        """The current key's overlay (created on first use)."""
        found = self._overlays.get(self.key)
        if found is None:
            found = self._overlays[self.key] = _Overlay()
        return found

    def register_timer(self, key: str, at_ms: int) -> None:
        """A processing-time timer on `key` (registered by Java with the buffer's writes)."""
        saved, self.key = self.key, key
        self.overlay().timers.append(at_ms)
        self.key = saved

    # -- reads (called by the state stand-ins) -----------------------------------------------------------

    def read_head(self) -> bytes | None:
        over = self._overlays.get(self.key)
        if over is not None and over.head is not _UNSET:
            return over.head
        known = self._heads.get(self.key)
        if known is not None:
            return known[1]
        return _bytes(self._reader.head(self.key))

    def read_slot(self, slot: int) -> bytes | None:
        over = self._overlays.get(self.key)
        if over is not None:
            if slot in over.slots:
                return over.slots[slot]
            if over.slots_cleared:
                return None
        known = self._heads.get(self.key)
        if known is not None and known[2] is not None and _record_slot_matches(known[1], slot):
            return known[2]
        return _bytes(self._reader.slot(self.key, slot))

    def read_side(self, name: str) -> bytes | None:
        over = self._overlays.get(self.key)
        if over is not None:
            if name in over.sides:
                return over.sides[name]
            if over.sides_cleared:
                return None
        return _bytes(self._reader.side(self.key, name))

    def has_earlier_layout(self) -> bool:
        over = self._overlays.get(self.key)
        if over is not None and over.old_cleared:
            return False
        known = self._heads.get(self.key)
        return known is None or known[0] == _EARLIER_LAYOUT

    # -- writes ---------------------------------------------------------------------------------------------

    def take_writes(self) -> list[Any]:
        """The buffer's writes as the Java operator's operation list, key by key; the overlay is emptied."""
        ops: list[Any] = []
        for key, over in self._overlays.items():
            if over.old_cleared:
                ops += (key, OLD_CLEAR, None, None)
            if over.slots_cleared:
                ops += (key, SLOTS_CLEAR, None, None)
            for slot, record in over.slots.items():
                ops += (key, SLOT_PUT, slot, record)
            if over.sides_cleared:
                ops += (key, SIDES_CLEAR, None, None)
            for name, value in over.sides.items():
                if value is None:
                    if not over.sides_cleared:
                        ops += (key, SIDE_REMOVE, name, None)
                else:
                    ops += (key, SIDE_PUT, name, value)
            if over.head is not _UNSET:
                ops += (key, HEAD_CLEAR, None, None) if over.head is None else (key, HEAD_PUT, over.head, None)
            for at in over.timers:
                ops += (key, TIMER, at, None)
        self._overlays.clear()
        return ops

    # -- the runtime-context surface FlinkVersionedState uses -------------------------------------------------

    def get_state(self, descriptor: Any) -> Any:
        """A value state stand-in for `descriptor` (by name: `<name>/h2`, `/head` or `/versions`)."""
        suffix = descriptor.get_name().rpartition("/")[2]
        if suffix == "h2":
            return _HeadState(self)
        if suffix in ("head", "versions"):
            return _OldValueState(self, suffix)
        raise ValueError(f"the buffered operator has no value state {descriptor.get_name()!r}")

    def get_map_state(self, descriptor: Any) -> Any:
        """A map state stand-in (`<name>/slots` or `<name>/side`)."""
        suffix = descriptor.get_name().rpartition("/")[2]
        if suffix == "slots":
            return _SlotsState(self)
        if suffix == "side":
            return _SidesState(self)
        raise ValueError(f"the buffered operator has no map state {descriptor.get_name()!r}")

    def get_list_state(self, descriptor: Any) -> Any:
        """The layout-1 history stand-in (`<name>/history`)."""
        return _OldHistoryState(self)


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _record_slot_matches(head: bytes | None, slot: int) -> bool:
    """Whether `slot` is the slot of the pre-read head's latest record (what Java pre-read)."""
    if head is None or len(head) < 30 or head[0] != 2 or head[1] & 1:
        return False
    latest = int.from_bytes(head[2:10], "big")
    ring = int.from_bytes(head[26:30], "big")
    return slot == (latest % ring if ring else latest)


class _HeadState:
    __slots__ = ("_states",)

    def __init__(self, states: BufferStates) -> None:
        self._states = states

    def value(self) -> bytes | None:
        return self._states.read_head()

    def update(self, value: bytes) -> None:
        self._states.overlay().head = value

    def clear(self) -> None:
        self._states.overlay().head = None


class _SlotsState:
    __slots__ = ("_states",)

    def __init__(self, states: BufferStates) -> None:
        self._states = states

    def get(self, slot: int) -> bytes | None:
        return self._states.read_slot(slot)

    def put(self, slot: int, record: bytes) -> None:
        self._states.overlay().slots[slot] = record

    def clear(self) -> None:
        over = self._states.overlay()
        over.slots.clear()
        over.slots_cleared = True

    def keys(self) -> Iterator[int]:
        states = self._states
        over = states.overlay()
        stored = set() if over.slots_cleared else {int(s) for s in states._reader.slotNumbers(states.key)}
        return iter(sorted(stored | set(over.slots)))


class _SidesState:
    __slots__ = ("_states",)

    def __init__(self, states: BufferStates) -> None:
        self._states = states

    def get(self, name: str) -> bytes | None:
        return self._states.read_side(name)

    def put(self, name: str, value: bytes) -> None:
        self._states.overlay().sides[name] = value

    def remove(self, name: str) -> None:
        self._states.overlay().sides[name] = None

    def clear(self) -> None:
        over = self._states.overlay()
        over.sides.clear()
        over.sides_cleared = True


class _OldValueState:
    __slots__ = ("_states", "_which")

    def __init__(self, states: BufferStates, which: str) -> None:
        self._states = states
        self._which = which

    def value(self) -> bytes | None:
        states = self._states
        if not states.has_earlier_layout():
            return None
        reader = states._reader
        return _bytes(reader.oldHead(states.key) if self._which == "head" else reader.oldBlob(states.key))

    def clear(self) -> None:
        self._states.overlay().old_cleared = True


class _OldHistoryState:
    __slots__ = ("_states",)

    def __init__(self, states: BufferStates) -> None:
        self._states = states

    def get(self) -> list[bytes]:
        states = self._states
        if not states.has_earlier_layout():
            return []
        return [bytes(r) for r in states._reader.oldHistory(states.key)]

    def clear(self) -> None:
        self._states.overlay().old_cleared = True
