"""RocksVersionedStore specifics: opening rules (format record, locks, read-only), restore, key layout."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from rocksdict import Options, Rdict

from state import (
    IncompatibleStateError,
    ReadOnlyStoreError,
    RetentionPolicy,
    RocksVersionedStore,
    StateError,
    StateStoreLockedError,
    StateVersion,
)
from state._rocks_keys import HEAD, side_key, slot_key
from state.rocks import META_KEY, ROCKS_FORMAT


def _raw_keys(path: Path) -> list[bytes]:
    with Rdict(str(path), Options(raw_mode=True)) as db:
        return list(db.keys())


def test_new_store_writes_its_format_record(tmp_path: Path) -> None:
    RocksVersionedStore(tmp_path / "db").close()
    with Rdict(str(tmp_path / "db"), Options(raw_mode=True)) as db:
        assert msgspec.msgpack.decode(db[META_KEY]) == {"format": ROCKS_FORMAT, "codec": "msgpack/1"}


def test_refuses_a_rocksdb_directory_without_format_record(tmp_path: Path) -> None:
    with Rdict(str(tmp_path / "foreign"), Options(raw_mode=True)) as db:
        db[b"some"] = b"data"
    with pytest.raises(IncompatibleStateError) as info:
        RocksVersionedStore(tmp_path / "foreign")
    message = str(info.value)
    assert "without a streamscore format record" in message
    assert f"expected streamscore rocks format {ROCKS_FORMAT}" in message
    assert "--state-dir at an empty folder" in message


def test_refuses_a_newer_format_on_open(tmp_path: Path) -> None:
    RocksVersionedStore(tmp_path / "db").close()
    with Rdict(str(tmp_path / "db"), Options(raw_mode=True)) as db:
        db[META_KEY] = msgspec.msgpack.encode({"format": ROCKS_FORMAT + 1, "codec": "msgpack/1"})
    with pytest.raises(IncompatibleStateError, match=f"found streamscore rocks format {ROCKS_FORMAT + 1}"):
        RocksVersionedStore(tmp_path / "db")
    # the refused open released the directory: a raw open works
    Rdict(str(tmp_path / "db"), Options(raw_mode=True)).close()


def test_refuses_an_unreadable_format_record(tmp_path: Path) -> None:
    RocksVersionedStore(tmp_path / "db").close()
    with Rdict(str(tmp_path / "db"), Options(raw_mode=True)) as db:
        db[META_KEY] = b"\xc1\xc1"
    with pytest.raises(IncompatibleStateError, match="unreadable format record"):
        RocksVersionedStore(tmp_path / "db")


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db") as store:
        store.key("a").put(1, event_time=1)
        with pytest.raises(StateStoreLockedError, match="only one writer"):
            RocksVersionedStore(tmp_path / "db")


def test_read_only_mode_reads_next_to_a_live_writer_and_refuses_writes(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db") as writer:
        writer.key("a").put("v1", event_time=1)
        writer.key("a").put("v2", event_time=2)
        with RocksVersionedStore(tmp_path / "db", read_only=True) as reader:
            assert reader.read_only
            assert reader.key("a").get() == StateVersion(2, 2, "v2", None)
            assert reader.key("a").as_of_time(1) == StateVersion(1, 1, "v1", None)
            assert list(reader.keys()) == ["a"]
            with pytest.raises(ReadOnlyStoreError):
                reader.key("a").put("v3", event_time=3)
            with pytest.raises(ReadOnlyStoreError):
                reader.delete("a")
            with pytest.raises(ReadOnlyStoreError):
                reader.write_batch()


def test_read_only_open_of_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="nothing to open read-only"):
        RocksVersionedStore(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="is a file"):
        RocksVersionedStore(tmp_path / "file")


def test_restore_refuses_a_non_empty_target_and_a_non_checkpoint(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db") as store:
        store.key("a").put(1, event_time=1)
        store.checkpoint(tmp_path / "cp")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(StateError, match="not empty"):
        RocksVersionedStore.restore(tmp_path / "cp", tmp_path / "busy")
    with pytest.raises(StateError, match="not a RocksDB checkpoint"):
        RocksVersionedStore.restore(tmp_path / "busy", tmp_path / "new")
    (tmp_path / "empty").mkdir()
    with RocksVersionedStore.restore(tmp_path / "cp", tmp_path / "empty") as restored:
        assert restored.key("a").get() == StateVersion(1, 1, 1, None)


def test_a_bounded_key_is_one_head_and_a_ring_of_slots_and_side_entries(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db", retention=RetentionPolicy(max_versions=3)) as store:
        for t in range(10):
            store.key("a").put(t, event_time=t)
            store.key("a").put_side("ids", bytes([t]), inline=True)
        store.key("a").put_side("ids/0", b"sealed")
    keys = _raw_keys(tmp_path / "db")
    assert keys == [META_KEY, HEAD + b"a", *(slot_key(b"a", s) for s in range(3)), side_key(b"a", "ids/0")]


def test_late_events_are_answered_from_the_heads_event_times(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db", retention=RetentionPolicy()) as store:
        for t in (10, 20, 30, 40):
            store.key("a").put(t, event_time=t)
        store.key("a").put("late", event_time=15)  # dominates versions 2..4 for every query time
        assert store.key("a").as_of_time(35) == StateVersion(5, 15, "late", None)
        assert store.key("a").as_of_time(12).version == 1  # type: ignore[union-attr]
        assert [v.version for v in store.key("a").history(10)] == [5, 4, 3, 2, 1]  # history keeps them


def test_delete_leaves_only_a_version_counter(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db", retention=RetentionPolicy()) as store:
        for t in range(5):
            store.key("a").put(t, event_time=t)
        store.key("a").put_side("s", b"x")
        store.delete("a")
    with Rdict(str(tmp_path / "db"), Options(raw_mode=True)) as db:
        db.compact_range(None, None)
        keys = list(db.keys())
    assert keys == [META_KEY, HEAD + b"a"]
    with RocksVersionedStore(tmp_path / "db", retention=RetentionPolicy()) as store:
        assert store.key("a").put(5, event_time=5) == 6


def test_runtime_entries_commit_with_the_batch_they_are_written_in(tmp_path: Path) -> None:
    with RocksVersionedStore(tmp_path / "db") as store:
        assert store.get_meta("offset/p0") is None
        with store.write_batch():
            store.key("a").put({"n": 1}, event_time=1)
            store.put_meta("offset/p0", b"41")
            assert store.get_meta("offset/p0") == b"41"  # the batch reads its own writes
        with pytest.raises(RuntimeError), store.write_batch():
            store.key("a").put({"n": 2}, event_time=2)
            store.put_meta("offset/p0", b"42")
            raise RuntimeError("crash before the commit")
        assert store.get_meta("offset/p0") == b"41"
        assert store.key("a").get().version == 1  # type: ignore[union-attr]
        assert list(store.keys()) == ["a"]  # runtime entries are not state keys
    with RocksVersionedStore(tmp_path / "db", read_only=True) as reader:
        assert reader.get_meta("offset/p0") == b"41"
        with pytest.raises(ReadOnlyStoreError):
            reader.put_meta("offset/p0", b"0")


def _write_layout_1(path: Path, keys: dict[str, list[tuple[int, int]]], deleted: dict[str, int]) -> None:
    """A store as layout 1 wrote it (format 1): per key its retained (version, event time) pairs with value
    `version * 10`, the latest record inside the head; deleted keys' counters under \\x04."""
    from state import _legacy
    from state.codec import MsgpackCodec

    codec = MsgpackCodec()
    with Rdict(str(path), Options(raw_mode=True)) as db:
        db[META_KEY] = msgspec.msgpack.encode({"format": 1, "codec": codec.format_id})
        for key, versions in keys.items():
            kb = key.encode()
            records = {v: _legacy.encode_record(t, None, codec.encode(v * 10)) for v, t in versions}
            (oldest, oldest_t), (latest, latest_t) = versions[0], versions[-1]
            for v, _ in versions[:-1]:
                db[b"\x01" + kb + b"\x00" + (2**64 - 1 - v).to_bytes(8, "big")] = records[v]
            for v, t in versions:
                db[b"\x02" + kb + b"\x00" + (t + 2**63).to_bytes(8, "big") + v.to_bytes(8, "big")] = b""
            head = _legacy.Head(latest, latest_t, oldest, oldest_t, max(t for _, t in versions), records[latest])
            db[b"\x03" + kb] = _legacy.encode_head(head)
        for key, last in deleted.items():
            db[b"\x04" + key.encode()] = last.to_bytes(8, "big")


def test_a_layout_1_store_is_converted_key_by_key_on_first_touch(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_layout_1(path, {"a": [(3, 30), (4, 45), (5, 40)], "b": [(1, 10)]}, {"gone": 7})
    with RocksVersionedStore(path, retention=RetentionPolicy(max_versions=4)) as store:
        assert sorted(store.keys()) == ["a", "b"]
        a = store.key("a")
        assert [(v.version, v.event_time, v.value) for v in a.history(10)] == [(5, 40, 50), (4, 45, 40), (3, 30, 30)]
        assert a.as_of_time(44).version == 5  # type: ignore[union-attr]
        assert a.as_of_time(35).version == 3  # type: ignore[union-attr]
        assert a.put(60, event_time=60) == 6 and a.put(70, event_time=70) == 7
        assert [v.version for v in a.history(10)] == [7, 6, 5, 4]
        assert store.key("gone").put(1, event_time=1) == 8  # the deleted key's counter survived
        assert store.key("b").get() == StateVersion(1, 10, 10, None)
    raw = _raw_keys(path)
    assert not any(k[:1] in (b"\x01", b"\x02", b"\x04") for k in raw if k[:1] != b"\x00")  # "b" too: get converted it
    with RocksVersionedStore(path, retention=RetentionPolicy(max_versions=4)) as store:
        assert [v.version for v in store.key("a").history(10)] == [7, 6, 5, 4]


def test_convert_all_and_read_only_conversion(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_layout_1(path, {"a": [(1, 10), (2, 20)], "b": [(1, 5)]}, {"gone": 3})
    with RocksVersionedStore(path, read_only=True) as reader:  # converts in memory, writes nothing
        assert [v.value for v in reader.key("a").history(5)] == [20, 10]
    with RocksVersionedStore(path) as store:
        assert store.convert_all() == 3
        assert store.key("a").as_of(1) == StateVersion(1, 10, 10, None)
    assert all(k[:1] in (b"\x00", b"\x03", b"\x05") for k in _raw_keys(path))
    with Rdict(str(path), Options(raw_mode=True)) as db:
        assert msgspec.msgpack.decode(db[META_KEY]) == {"format": ROCKS_FORMAT, "codec": "msgpack/1"}


def test_a_batch_held_open_across_steps_is_written_once_or_not_at_all(tmp_path: Path) -> None:
    """`begin_batch` keeps one write batch open over several steps (the faust runtime scores a batch while the
    previous one commits): reads see every step, `pending_sides` gives each step's side changes once, nothing
    reaches RocksDB before `commit_batch`, and `discard_batch` drops every step."""
    store = RocksVersionedStore(tmp_path / "db")
    store.begin_batch()
    with pytest.raises(StateError):
        store.begin_batch()
    store.put("a", 1, event_time=1)
    store.put_side("a", "ids", b"x")
    assert [(k, n, v) for k, n, v, _ in store.pending_sides()] == [("a", "ids", b"x")]
    store.put("a", 2, event_time=2)  # step two reads step one's head
    store.put_side("b", "ids", b"y")
    assert [(k, n, v) for k, n, v, _ in store.pending_sides()] == [("b", "ids", b"y")]
    assert store.get("a") == StateVersion(2, 2, 2, None)
    assert RocksVersionedStore(tmp_path / "db", read_only=True).get("a") is None  # not written yet
    store.commit_batch()
    assert not store.in_batch
    store.begin_batch()
    store.put("a", 3, event_time=3)
    store.discard_batch()
    assert store.get("a") == StateVersion(2, 2, 2, None)
    store.close()
    with RocksVersionedStore(tmp_path / "db") as reopened:
        assert [v.version for v in reopened.history("a", 5)] == [2, 1]
        assert reopened.side("b", "ids") == b"y"


def test_verify_reads_every_entry_and_names_the_folder_of_a_garbled_sst(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = RocksVersionedStore(path)
    for i in range(2_000):
        store.key(f"k{i}").put({"v": i, "pad": "x" * 40}, event_time=i)
    store.flush()
    assert store.verify() > 2_000  # heads, records and the format record
    store.close()
    sst = max(path.glob("*.sst"), key=lambda p: p.stat().st_size)
    garbled = bytearray(sst.read_bytes())
    for i in range(64, len(garbled) // 2, 97):
        garbled[i] ^= 0xFF
    sst.write_bytes(bytes(garbled))
    with pytest.raises(Exception, match="Corruption") as info:  # the open itself may already read the bad block
        RocksVersionedStore(path).verify()
    assert str(path) in str(info.value)
