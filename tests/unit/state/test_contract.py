"""The VersionedStore / VersionedState contract, run against every backend (memory, rocks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from state import (
    CorruptStateError,
    IncompatibleStateError,
    MsgpackCodec,
    RetentionPolicy,
    SourceCoordinates,
    StateError,
    StateVersion,
    StoreClosedError,
    VersionedState,
    VersionedStore,
)
from tests.unit.state.state_testkit import AnyStore, Backend, OtherCodec, as_tuple

KEEP_ALL = RetentionPolicy()


@pytest.fixture()
def store(backend: Backend) -> Iterator[AnyStore]:
    """An empty store that keeps every version."""
    s = backend.open(KEEP_ALL)
    yield s
    s.close()


def _src(offset: int) -> SourceCoordinates:
    return SourceCoordinates("payments", 3, offset)


def test_implements_the_protocols(store: AnyStore) -> None:
    as_store: VersionedStore[Any] = store
    as_state: VersionedState[Any] = store.key("a")
    assert as_store.retention == KEEP_ALL
    assert as_state.get() is None


def test_empty_key_reads_nothing(store: AnyStore) -> None:
    k = store.key("nobody")
    assert k.get() is None
    assert k.as_of(1) is None
    assert k.as_of_time(10**12) is None
    assert k.history(5) == []
    assert list(store.keys()) == []


def test_put_returns_increasing_versions_and_get_returns_latest(store: AnyStore) -> None:
    k = store.key("acct-1")
    assert k.put({"n": 1}, event_time=1000, source=_src(7)) == 1
    assert k.put({"n": 2}, event_time=2000) == 2
    assert k.put({"n": 3}, event_time=3000, source=_src(9)) == 3
    assert k.get() == StateVersion(3, 3000, {"n": 3}, _src(9))
    assert store.key("acct-2").put("other", event_time=5) == 1  # counters are per key
    assert sorted(store.keys()) == ["acct-1", "acct-2"]


def test_as_of_returns_each_version_exactly(store: AnyStore) -> None:
    k = store.key("a")
    for i in range(1, 6):
        k.put({"i": i}, event_time=i * 10, source=_src(i))
    for i in range(1, 6):
        assert k.as_of(i) == StateVersion(i, i * 10, {"i": i}, _src(i))
    assert k.as_of(0) is None
    assert k.as_of(6) is None
    assert k.as_of(-3) is None


def test_as_of_time_in_order(store: AnyStore) -> None:
    k = store.key("a")
    for t in (100, 200, 300):
        k.put(t, event_time=t)
    assert k.as_of_time(99) is None
    assert [k.as_of_time(t).version for t in (100, 150, 200, 299, 300, 10**15)] == [1, 1, 2, 2, 3, 3]  # type: ignore[union-attr]


def test_as_of_time_out_of_order_picks_highest_version_at_or_before(store: AnyStore) -> None:
    k = store.key("a")
    # versions:   1     2     3     4     5
    times = [100, 300, 200, 300, 150]
    for t in times:
        k.put(t, event_time=t)

    def at(t: int) -> int | None:
        v = k.as_of_time(t)
        return None if v is None else v.version

    assert at(99) is None
    assert at(100) == 1
    assert at(149) == 1
    assert at(150) == 5  # version 5 happened at 150 and is the highest version <= 150
    assert at(250) == 5
    assert at(300) == 5
    assert at(10**15) == 5


def test_as_of_time_equal_event_times_pick_the_newest(store: AnyStore) -> None:
    k = store.key("a")
    for value in ("x", "y", "z"):
        k.put(value, event_time=42)
    k.put("later", event_time=50)
    assert k.as_of_time(42) == StateVersion(3, 42, "z", None)
    assert k.as_of_time(49).value == "z"  # type: ignore[union-attr]


def test_history_is_newest_first_and_limited(store: AnyStore) -> None:
    k = store.key("a")
    for i in range(1, 5):
        k.put(i, event_time=i)
    assert [v.version for v in k.history(10)] == [4, 3, 2, 1]
    assert [v.value for v in k.history(2)] == [4, 3]
    assert k.history(1) == [k.get()]
    assert k.history(0) == []
    with pytest.raises(ValueError):
        k.history(-1)


def test_delete_removes_all_versions_but_never_reuses_version_numbers(store: AnyStore) -> None:
    k = store.key("a")
    k.put(1, event_time=1)
    k.put(2, event_time=2)
    store.key("b").put(1, event_time=1)
    store.delete("a")
    assert k.get() is None
    assert k.as_of(1) is None
    assert k.as_of_time(10) is None
    assert k.history(5) == []
    assert list(store.keys()) == ["b"]
    store.delete("a")  # deleting again is a no-op
    store.delete("never-existed")
    assert k.put("again", event_time=0) == 3
    assert [v.version for v in k.history(5)] == [3]
    assert k.as_of_time(0) == StateVersion(3, 0, "again", None)


def test_retention_max_versions_keeps_the_newest(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=3))
    k = store.key("a")
    for i in range(1, 8):
        assert k.put(i, event_time=i) == i
    assert [v.version for v in k.history(10)] == [7, 6, 5]
    assert k.as_of(4) is None
    assert k.as_of(5) is not None
    assert k.as_of_time(4) is None  # version 4 would qualify but was pruned
    assert k.as_of_time(5).version == 5  # type: ignore[union-attr]
    store.close()


def test_retention_max_versions_one_keeps_only_latest(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=1))
    k = store.key("a")
    for i in range(1, 5):
        k.put(i, event_time=10 - i)  # out of order on purpose
    assert [v.version for v in k.history(10)] == [4]
    assert k.as_of(3) is None
    assert k.as_of_time(6) == StateVersion(4, 6, 4, None)
    assert k.as_of_time(5) is None
    store.close()


def test_retention_horizon_is_relative_to_the_keys_newest_event_time(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(horizon_ms=50))
    k = store.key("a")
    k.put("v1", event_time=0)
    k.put("v2", event_time=10)
    k.put("v3", event_time=55)  # watermark 55: v1 (0 < 5) goes, v2 (10 >= 5) stays
    assert [v.version for v in k.history(10)] == [3, 2]
    k.put("v4", event_time=30)  # late event: the watermark stays 55, nothing more is pruned
    assert [v.version for v in k.history(10)] == [4, 3, 2]
    k.put("v5", event_time=200)  # watermark 200: v2 (10), v3 (55), v4 (30) are all older than 150
    assert [v.version for v in k.history(10)] == [5]
    store.close()


def test_retention_horizon_prunes_a_prefix_only(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(horizon_ms=50))
    k = store.key("a")
    k.put("v1", event_time=100)
    k.put("v2", event_time=0)  # already older than 100 - 50, but v1 before it must stay, so v2 stays
    k.put("v3", event_time=120)
    assert [v.version for v in k.history(10)] == [3, 2, 1]
    assert k.as_of_time(10).version == 2  # type: ignore[union-attr]
    k.put("v4", event_time=151)  # floor 101: v1 (100) goes, then v2 (0) goes, v3 (120) stays
    assert [v.version for v in k.history(10)] == [4, 3]
    store.close()


def test_retention_never_removes_the_latest_version(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=1, horizon_ms=0))
    k = store.key("a")
    k.put("new", event_time=1000)
    k.put("very late", event_time=1)
    assert k.get() == StateVersion(2, 1, "very late", None)
    assert k.history(5) == [k.get()]
    store.close()


def test_write_batch_commits_all_keys_together(store: AnyStore) -> None:
    store.key("a").put("a0", event_time=1)
    with store.write_batch():
        assert store.key("a").put("a1", event_time=2) == 2
        assert store.key("b").put("b1", event_time=2) == 1
        assert store.key("b").put("b2", event_time=3) == 2
        # reads inside the batch see the batch's writes
        assert store.key("b").get() == StateVersion(2, 3, "b2", None)
        assert store.key("b").as_of(1) == StateVersion(1, 2, "b1", None)
        assert [v.value for v in store.key("a").history(5)] == ["a1", "a0"]
        assert store.key("b").as_of_time(2).value == "b1"  # type: ignore[union-attr]
        assert sorted(store.keys()) == ["a", "b"]
    assert store.key("a").get().value == "a1"  # type: ignore[union-attr]
    assert [v.value for v in store.key("b").history(5)] == ["b2", "b1"]


def test_write_batch_is_all_or_nothing(store: AnyStore) -> None:
    store.key("a").put("a0", event_time=1)
    store.key("gone").put("g0", event_time=1)
    with pytest.raises(RuntimeError, match="boom"), store.write_batch():
        store.key("a").put("a1", event_time=2)
        store.key("b").put("b1", event_time=2)
        store.delete("gone")
        raise RuntimeError("boom")
    assert store.key("a").get() == StateVersion(1, 1, "a0", None)
    assert store.key("b").get() is None
    assert store.key("gone").get().value == "g0"  # type: ignore[union-attr]
    assert sorted(store.keys()) == ["a", "gone"]
    # the aborted versions were never committed, so the next put reuses nothing visible
    assert store.key("a").put("a1", event_time=3) == 2


def test_forget_removes_every_version_and_the_counter(store: AnyStore) -> None:
    k = store.key("a")
    for i in range(4):
        k.put(i, event_time=10 + i)
    store.key("b").put("b", event_time=1)
    k.forget()
    assert k.get() is None and k.history(5) == [] and k.as_of(2) is None and k.as_of_time(100) is None
    assert list(store.keys()) == ["b"]
    assert k.put("new life", event_time=5) == 1  # versions start again
    assert [v.version for v in k.history(5)] == [1] and k.as_of_time(4) is None
    store.delete("a")
    store.forget("a")  # a deleted key's kept counter goes too
    assert k.put("third", event_time=6) == 1
    store.forget("never-existed")  # a no-op


def test_forget_then_put_in_one_batch(store: AnyStore) -> None:
    k = store.key("a")
    for i in range(3):
        k.put(i, event_time=i)
    with store.write_batch():
        k.forget()
        assert k.get() is None
        assert k.put("x", event_time=9) == 1
        assert k.put("y", event_time=10) == 2
    assert [v.version for v in k.history(5)] == [2, 1]
    assert k.as_of(1) == StateVersion(1, 9, "x", None)


def test_write_batch_delete_then_put_in_one_batch(store: AnyStore) -> None:
    k = store.key("a")
    k.put(1, event_time=1)
    k.put(2, event_time=2)
    with store.write_batch():
        store.delete("a")
        assert k.get() is None
        assert k.put(3, event_time=0) == 3
        assert k.as_of_time(0) == StateVersion(3, 0, 3, None)
    assert [v.version for v in k.history(5)] == [3]


def test_nested_write_batches_join_the_outer_one(store: AnyStore) -> None:
    with pytest.raises(KeyError), store.write_batch():
        with store.write_batch():
            store.key("a").put(1, event_time=1)
        assert store.key("a").get() is not None  # visible inside the outer batch
        raise KeyError("abort outer")
    assert store.key("a").get() is None


def test_write_batch_with_out_of_order_times_and_retention(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=3))
    k = store.key("a")
    with store.write_batch():
        for t in (50, 10, 40, 20, 30):
            k.put(t, event_time=t)
        inside = [(t, k.as_of_time(t)) for t in (5, 10, 20, 25, 30, 45, 60)]
    after = [(t, k.as_of_time(t)) for t in (5, 10, 20, 25, 30, 45, 60)]
    assert inside == after
    assert [(t, None if v is None else v.version) for t, v in after] == [
        (5, None), (10, None), (20, 4), (25, 4), (30, 5), (45, 5), (60, 5)
    ]
    store.close()


def test_checkpoint_and_restore(backend: Backend, tmp_path: Path) -> None:
    retention = RetentionPolicy(max_versions=4)
    store = backend.open(retention)
    for i in range(1, 7):
        store.key("a").put({"i": i}, event_time=100 - i, source=_src(i))
    store.key("b").put("b", event_time=5)
    store.key("c").put("c", event_time=5)
    store.delete("c")
    expected = {k: [as_tuple(v) for v in store.key(k).history(10)] for k in ("a", "b", "c")}
    checkpoint = tmp_path / "checkpoints" / "cp-1"
    store.checkpoint(checkpoint)
    store.key("a").put("after checkpoint", event_time=1)
    store.key("d").put("after checkpoint", event_time=1)
    with pytest.raises(StateError, match="already exists"):
        store.checkpoint(checkpoint)
    store.close()

    restored = backend.restore(checkpoint, retention)
    assert sorted(restored.keys()) == ["a", "b"]
    assert {k: [as_tuple(v) for v in restored.key(k).history(10)] for k in ("a", "b", "c")} == expected
    assert restored.key("a").as_of_time(94) == StateVersion(6, 94, {"i": 6}, _src(6))
    assert restored.key("a").as_of_time(93) is None
    assert restored.key("a").put("next", event_time=0) == 7
    assert restored.key("c").put("next", event_time=0) == 2  # the deleted key's counter survived
    restored.close()
    # the checkpoint itself is unchanged by writes to the restored store
    again = backend.restore(checkpoint, retention)
    assert [as_tuple(v) for v in again.key("a").history(10)] == expected["a"]
    again.close()


def test_checkpoint_is_refused_inside_a_batch(store: AnyStore, tmp_path: Path) -> None:
    with store.write_batch():
        store.key("a").put(1, event_time=1)
        with pytest.raises(StateError, match="inside write_batch"):
            store.checkpoint(tmp_path / "cp")


def test_restore_refuses_a_foreign_format_version(backend: Backend, tmp_path: Path) -> None:
    store = backend.open(KEEP_ALL)
    store.key("a").put(1, event_time=1)
    checkpoint = tmp_path / "cp"
    store.checkpoint(checkpoint)
    store.close()
    backend.write_foreign_format(store, checkpoint)
    with pytest.raises(IncompatibleStateError) as info:
        backend.restore(checkpoint, KEEP_ALL)
    message = str(info.value)
    assert "format 99" in message  # what was found
    assert "expected" in message and "format 2" in message  # what is expected (older formats are converted)
    assert "newer streamscore" in message and "rebuild" in message  # what to do


def test_restore_refuses_a_different_codec(backend: Backend, tmp_path: Path) -> None:
    store = backend.open(KEEP_ALL)
    store.key("a").put(1, event_time=1)
    store.checkpoint(tmp_path / "cp")
    store.close()
    with pytest.raises(IncompatibleStateError, match="other/7"):
        backend.restore(tmp_path / "cp", KEEP_ALL, OtherCodec())


def test_corrupt_bytes_raise_corrupt_state_error_naming_key_and_version(backend: Backend) -> None:
    store = backend.open(KEEP_ALL)
    k = store.key("acct-9")
    for i in range(1, 4):
        k.put({"i": i}, event_time=i)
    for bad in (2, 3):
        store = backend.corrupt_value(store, "acct-9", bad)
        k = store.key("acct-9")
        with pytest.raises(CorruptStateError) as info:
            k.as_of(bad)
        assert info.value.key == "acct-9"
        assert info.value.version == bad
        assert "'acct-9'" in str(info.value) and f"version {bad}" in str(info.value)
        with pytest.raises(CorruptStateError):
            k.history(5)
    assert k.as_of(1) == StateVersion(1, 1, {"i": 1}, None)  # undamaged versions still read
    with pytest.raises(CorruptStateError):
        k.get()
    assert k.put({"i": 4}, event_time=4) == 4  # a new version can still be written over the damage
    assert k.get() == StateVersion(4, 4, {"i": 4}, None)
    store.close()


def test_closed_store_refuses_operations(backend: Backend) -> None:
    store = backend.open(KEEP_ALL)
    k = store.key("a")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreClosedError):
        k.get()
    with pytest.raises(StoreClosedError):
        k.put(1, event_time=1)
    with pytest.raises(StoreClosedError):
        list(store.keys())


def test_invalid_keys_and_event_times_are_programmer_errors(store: AnyStore) -> None:
    for bad_key in ("", "a\x00b"):
        with pytest.raises(ValueError):
            store.key(bad_key)
    k = store.key("a")
    with pytest.raises(TypeError):
        k.put(1, event_time=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        k.put(1, event_time=True)
    with pytest.raises(ValueError):
        k.put(1, event_time=2**63)
    with pytest.raises(TypeError):
        k.put(object(), event_time=1)  # not encodable: nothing is written
    assert k.get() is None


def test_extreme_event_times_and_unicode_keys(store: AnyStore) -> None:
    k = store.key("kunde/Ünïcødé ✓")
    k.put("min", event_time=-(2**63))
    k.put("max", event_time=2**63 - 1)
    k.put("zero", event_time=0)
    assert k.as_of_time(-(2**63)).value == "min"  # type: ignore[union-attr]
    assert k.as_of_time(-1).value == "min"  # type: ignore[union-attr]
    assert k.as_of_time(0).value == "zero"  # type: ignore[union-attr]
    assert k.as_of_time(2**63 - 1).value == "zero"  # type: ignore[union-attr]
    assert list(store.keys()) == ["kunde/Ünïcødé ✓"]


def test_reads_return_fresh_values(store: AnyStore) -> None:
    k = store.key("a")
    k.put({"items": [1, 2]}, event_time=1)
    first = k.get()
    assert first is not None
    first.value["items"].append(3)
    assert k.get().value == {"items": [1, 2]}  # type: ignore[union-attr]


class Features(msgspec.Struct):
    """A typed state value with a recurrent hidden vector."""

    count: int
    total: float
    hidden: np.ndarray
    last_merchant: str | None = None


def test_typed_values_with_float32_arrays(backend: Backend) -> None:
    store = backend.open(KEEP_ALL, MsgpackCodec(Features))
    k = store.key("acct")
    hidden = np.linspace(-1, 1, 32, dtype=np.float32).reshape(4, 8)
    k.put(Features(1, 9.5, hidden, "m-1"), event_time=10)
    k.put(Features(2, 19.0, hidden * 2), event_time=20)
    store = backend.reopen(store)
    got = store.key("acct").as_of(1)
    assert got is not None
    assert isinstance(got.value, Features)
    assert got.value.hidden.dtype == np.float32 and got.value.hidden.shape == (4, 8)
    np.testing.assert_array_equal(got.value.hidden, hidden)
    got.value.hidden += 1  # decoded arrays are writable copies
    np.testing.assert_array_equal(store.key("acct").as_of(1).value.hidden, hidden)  # type: ignore[union-attr]
    assert store.key("acct").get().value.last_merchant is None  # type: ignore[union-attr]
    store.close()


def test_reopen_preserves_everything(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=5))
    for i, t in enumerate((30, 10, 20, 40, 5, 35, 25), start=1):
        store.key("a").put(i, event_time=t, source=_src(i))
    store.key("b").put("b", event_time=1)
    store.delete("b")
    before = [as_tuple(store.key("a").as_of_time(t)) for t in range(0, 45)]
    store = backend.reopen(store)
    assert [as_tuple(store.key("a").as_of_time(t)) for t in range(0, 45)] == before
    assert [v.version for v in store.key("a").history(10)] == [7, 6, 5, 4, 3]
    assert store.key("b").put("b", event_time=1) == 2
    store.close()


@pytest.mark.parametrize("inline", [False, True])
def test_side_entries_are_unversioned_per_key_data(store: AnyStore, inline: bool) -> None:
    k = store.key("acct-1")
    assert k.side("ids") is None
    k.put_side("ids", b"\x01\x02", inline=inline)
    assert k.side("ids") == b"\x01\x02"
    assert list(store.keys()) == []  # side data alone is no state version
    assert k.get() is None
    k.put({"n": 1}, event_time=10)
    k.put_side("ids", b"\x03", inline=inline)
    k.put({"n": 2}, event_time=20)
    assert k.side("ids") == b"\x03"
    assert [v.value for v in k.history(5)] == [{"n": 2}, {"n": 1}]  # versions do not carry side data
    assert store.key("acct-2").side("ids") is None  # per key
    k.put_side("ids", None, inline=inline)
    assert k.side("ids") is None


def test_side_entries_move_between_inline_and_separate(store: AnyStore) -> None:
    k = store.key("a")
    k.put(1, event_time=1)
    k.put_side("chunk", b"inline", inline=True)
    k.put_side("chunk", b"separate")
    assert k.side("chunk") == b"separate"
    k.put_side("chunk", b"inline again", inline=True)
    assert k.side("chunk") == b"inline again"
    k.put(2, event_time=2)
    assert k.side("chunk") == b"inline again"


def test_inline_side_entries_are_small(store: AnyStore) -> None:
    from state.layout import MAX_INLINE_BYTES

    k = store.key("a")
    k.put_side("big", b"x" * MAX_INLINE_BYTES, inline=True)
    with pytest.raises(ValueError, match="inline side entry 'big'"):
        k.put_side("big", b"x" * (MAX_INLINE_BYTES + 1), inline=True)
    k.put_side("big", b"x" * (MAX_INLINE_BYTES + 1))  # a separate entry may be large
    with pytest.raises(ValueError, match="side entry names"):
        k.put_side("", b"x")


def test_forget_and_delete_drop_side_entries(store: AnyStore) -> None:
    for name in ("a", "b"):
        k = store.key(name)
        k.put(1, event_time=1)
        k.put_side("inline", b"i", inline=True)
        k.put_side("separate", b"s")
    store.forget("a")
    store.delete("b")
    for name in ("a", "b"):
        assert store.key(name).side("inline") is None
        assert store.key(name).side("separate") is None
    assert store.key("a").put(2, event_time=2) == 1  # forget drops the counter
    assert store.key("b").put(2, event_time=2) == 2  # delete keeps it


def test_side_entries_in_batches_checkpoints_and_reopen(backend: Backend, tmp_path: Path) -> None:
    store = backend.open(KEEP_ALL)
    k = store.key("a")
    with store.write_batch():
        k.put(1, event_time=1)
        k.put_side("inline", b"i1", inline=True)
        k.put_side("separate", b"s1")
        assert k.side("inline") == b"i1" and k.side("separate") == b"s1"  # the batch reads its own writes
    with pytest.raises(RuntimeError), store.write_batch():
        k.put_side("inline", b"i2", inline=True)
        k.put_side("separate", None)
        store.key("new").put_side("x", b"y")
        raise RuntimeError("abort")
    assert k.side("inline") == b"i1" and k.side("separate") == b"s1"  # rolled back
    assert store.key("new").side("x") is None
    store.checkpoint(tmp_path / "cp")
    store = backend.reopen(store)
    assert store.key("a").side("inline") == b"i1" and store.key("a").side("separate") == b"s1"
    restored = backend.restore(tmp_path / "cp", KEEP_ALL)
    assert restored.key("a").side("inline") == b"i1" and restored.key("a").side("separate") == b"s1"
    restored.close()
    store.close()


def test_a_smaller_retention_reslots_on_the_next_put(backend: Backend) -> None:
    store = backend.open(RetentionPolicy(max_versions=6))
    k = store.key("a")
    for i in range(1, 12):
        k.put(i, event_time=i * 10)
    store = backend.reopen(store, RetentionPolicy(max_versions=4))
    assert [v.version for v in store.key("a").history(10)] == [11, 10, 9, 8, 7, 6]  # from the next put on
    store.key("a").put(12, event_time=120)
    assert [(v.version, v.value) for v in store.key("a").history(10)] == [(12, 12), (11, 11), (10, 10), (9, 9)]
    store = backend.reopen(store, RetentionPolicy(max_versions=7))
    for i in range(13, 16):
        store.key("a").put(i, event_time=i * 10)
    assert [v.version for v in store.key("a").history(10)] == [15, 14, 13, 12, 11, 10, 9]
    assert store.key("a").as_of_time(95).version == 9  # type: ignore[union-attr]
    store.close()
