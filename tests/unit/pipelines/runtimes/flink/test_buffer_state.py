"""The buffered operator's Python state path (`buffer_state.BufferStates` under `FlinkVersionedState`, driven as
`buffered._BufferKeyStore` drives it) against the contract's reference store.

`KeyedStore` plays the Java operator's part in plain Python: Flink's keyed states as dicts per key, the pre-read of
a buffer's heads and latest records, the `StateReader` calls, and the application of the returned operations in
order (what `BufferedPythonOperator.apply` does). Random operations on a few keys are cut into random buffers, and
now and then the versioned state is built anew (a restore: an empty head cache), so reads go through the overlay,
the pre-read and the reader. Every answer and the final state of every key must equal `MemoryVersionedStore`'s.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipelines.runtimes.flink import buffer_state as ops
from pipelines.runtimes.flink.buffer_state import BufferStates
from pipelines.runtimes.flink.buffered import _BufferKeyStore
from state import MemoryVersionedStore, MsgpackCodec, RetentionPolicy, SourceCoordinates
from state._handle import KeyState
from state.flink_state import FlinkVersionedState


class KeyedStore:
    """Flink keyed state of one operator as the Java operator sees it (dicts per key) and its `StateReader`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.heads: dict[str, bytes] = {}
        self.slots: dict[str, dict[int, bytes]] = {}
        self.sides: dict[str, dict[str, bytes]] = {}
        self.timers: list[tuple[str, int]] = []
        self.reads = 0

    # StateReader
    def head(self, key: str) -> bytes | None:
        self.reads += 1
        return self.heads.get(key)

    def slot(self, key: str, slot: int) -> bytes | None:
        self.reads += 1
        return self.slots.get(key, {}).get(slot)

    def slotNumbers(self, key: str) -> tuple[int, ...]:
        return tuple(self.slots.get(key, {}))

    def side(self, key: str, name: str) -> bytes | None:
        self.reads += 1
        return self.sides.get(key, {}).get(name)

    def oldHead(self, key: str) -> None:
        return None

    def oldBlob(self, key: str) -> None:
        return None

    def oldHistory(self, key: str) -> tuple[bytes, ...]:
        return ()

    def prefetch(self, keys: list[str]) -> tuple[tuple[str, ...], tuple[Any, ...], tuple[Any, ...], tuple[int, ...]]:
        """What Java reads before the call: head, latest record and status of each distinct key."""
        from pipelines.runtimes.flink.buffer_state import _record_slot_matches

        distinct = tuple(dict.fromkeys(keys))
        heads = tuple(self.heads.get(k) for k in distinct)
        latest = []
        for key, head in zip(distinct, heads, strict=True):
            found = None
            for slot, record in self.slots.get(key, {}).items():
                if _record_slot_matches(head, slot):
                    found = record
            latest.append(found)
        return distinct, heads, tuple(latest), tuple(0 if h is None else 1 for h in heads)

    def apply(self, writes: list[Any]) -> None:
        """Apply the operation list as `BufferedPythonOperator.apply` does."""
        for i in range(0, len(writes), 4):
            key, code, a, b = writes[i:i + 4]
            if code == ops.HEAD_PUT:
                self.heads[key] = a
            elif code == ops.HEAD_CLEAR:
                self.heads.pop(key, None)
            elif code == ops.SLOTS_CLEAR:
                self.slots.pop(key, None)
            elif code == ops.SLOT_PUT:
                self.slots.setdefault(key, {})[a] = b
            elif code == ops.SIDES_CLEAR:
                self.sides.pop(key, None)
            elif code == ops.SIDE_PUT:
                self.sides.setdefault(key, {})[a] = b
            elif code == ops.SIDE_REMOVE:
                self.sides.get(key, {}).pop(a, None)
            elif code == ops.OLD_CLEAR:
                pass
            elif code == ops.TIMER:
                self.timers.append((key, a))
            else:
                raise AssertionError(f"unknown operation {code}")


class _Descriptor:
    def __init__(self, name: str) -> None:
        self._name = name

    def get_name(self) -> str:
        return self._name


def _versioned(states: BufferStates, retention: RetentionPolicy) -> FlinkVersionedState[Any]:
    return FlinkVersionedState(states, "t", MsgpackCodec(), retention=retention)  # type: ignore[arg-type]


def _view(v: Any) -> Any:
    return None if v is None else (v.version, v.event_time, v.value, v.source)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("prefetch", [True, False])
def test_buffers_of_random_operations_match_the_reference(seed: int, prefetch: bool) -> None:
    rng = random.Random(seed)
    retention = RetentionPolicy(max_versions=rng.choice([2, 3, 16]))
    keyed = KeyedStore("t")
    states = BufferStates(keyed)
    versioned = _versioned(states, retention)
    reference = MemoryVersionedStore(codec=MsgpackCodec(), retention=retention)
    keys = [f"k{i}" for i in range(5)]
    clock = 1_700_000_000_000
    for _ in range(60):  # buffers
        if rng.random() < 0.15:  # a restore: the head cache starts empty
            versioned = _versioned(states, retention)
        buffer = [rng.choice(keys) for _ in range(rng.randint(1, 12))]
        states.begin(*(keyed.prefetch(buffer) if prefetch else ((), (), (), ())))
        store = _BufferKeyStore(versioned, states, None, changelog=True)
        for key in buffer:
            mine, ref = KeyState(store, key), reference.key(key)
            draw = rng.random()
            clock += rng.randint(0, 5)
            if draw < 0.5:
                value = {"n": rng.randint(0, 99)}
                source = SourceCoordinates("in", 0, rng.randint(0, 10**6))
                assert mine.put(value, event_time=clock, source=source) == ref.put(
                    value, event_time=clock, source=source)
            elif draw < 0.7:
                name = rng.choice(["ids", "open"])
                value_bytes = rng.choice([None, rng.randbytes(rng.randint(1, 40))])
                inline = name == "open"
                mine.put_side(name, value_bytes, inline=inline)
                ref.put_side(name, value_bytes, inline=inline)
            elif draw < 0.75:
                mine.forget()
                ref.forget()
            elif draw < 0.85:
                limit = rng.randint(1, 4)
                assert [_view(v) for v in mine.history(limit)] == [_view(v) for v in ref.history(limit)]
            else:
                assert _view(mine.get()) == _view(ref.get())
                for name in ("ids", "open"):
                    assert mine.side(name) == ref.side(name)
        store.finish()
        keyed.apply(states.take_writes())
    # Read everything back through a fresh state (what a restored job sees).
    fresh = _versioned(states, retention)
    states.begin((), (), (), ())
    store = _BufferKeyStore(fresh, states, None, changelog=False)
    for key in keys:
        mine, ref = KeyState(store, key), reference.key(key)
        assert [_view(v) for v in mine.history(20)] == [_view(v) for v in ref.history(20)]
        for name in ("ids", "open"):
            assert mine.side(name) == ref.side(name)
    store.finish()
    assert states.take_writes() == []  # reading writes nothing


def test_a_buffer_writes_each_key_head_once_and_prefetched_keys_need_no_reader_call() -> None:
    keyed = KeyedStore("t")
    states = BufferStates(keyed)
    retention = RetentionPolicy(max_versions=4)
    versioned = _versioned(states, retention)
    for round_ in range(2):
        buffer = ["a", "b", "a", "a", "b"]
        states.begin(*keyed.prefetch(buffer))
        store = _BufferKeyStore(versioned, states, None, changelog=False)
        for i, key in enumerate(buffer):
            state = KeyState(store, key)
            state.get()
            state.put({"i": i}, event_time=1_000 + 10 * round_ + i)
        store.finish()
        writes = states.take_writes()
        codes = [(writes[i], writes[i + 1]) for i in range(0, len(writes), 4)]
        assert codes.count(("a", ops.HEAD_PUT)) == 1 and codes.count(("b", ops.HEAD_PUT)) == 1
        assert codes.count(("a", ops.SLOT_PUT)) == 3
        keyed.apply(writes)
        versioned = _versioned(states, retention)  # no cache: the second round reads only what Java pre-read
        reads = keyed.reads
    assert keyed.reads == reads
