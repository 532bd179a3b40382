"""FlinkVersionedState inside a real PyFlink job (thread mode, RocksDB state backend).

One bounded job keyed by entity applies a few hundred puts and clears, with out-of-order event times,
to two versioned states (short retention with a horizon, and the default); every answer the job gives
is compared with MemoryVersionedStore fed the same operations, i.e. with the contract's reference.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from state import MemoryVersionedStore, MsgpackCodec, SourceCoordinates
from state.flink_state import flink_state_configuration
from tests.unit.state.flink_probe import (
    DEFAULT,
    RETAIN,
    SHORT,
    CountingProbe,
    Layout1Probe,
    Value,
    VersionedStateProbe,
    observe,
    value_of,
)

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _operations(count: int, seed: int = 20260523) -> list[tuple[int, str, str, int, int]]:
    """(index, key, op, n, event_time): event times drift upward with jitter (so often out of order); side
    entries set and removed; the short state's retention changes at a third (ring 3 -> 5) and at two thirds
    (5 -> 2) of the run."""
    rng = random.Random(seed)
    clock = 1_700_000_000_000
    ops = []
    for index in range(count):
        clock += rng.randint(0, 10)
        draw = rng.random()
        op = "clear" if draw < 0.04 else "forget" if draw < 0.07 else "side" if draw < 0.22 else "put"
        if index in (count // 3, 2 * count // 3):
            op = "retain"
        n = (5 if index == count // 3 else 2) if op == "retain" else rng.randint(0, 1000)
        event_time = clock - rng.choice([0, 0, 5, 30])
        ops.append((index, f"acct-{rng.randint(0, 4)}", op, n, event_time))
    return ops


def _reference(ops: list[tuple[int, str, str, int, int]], tmp: Path) -> list[dict[str, Any]]:
    codec = MsgpackCodec(Value)
    stores = {"short": MemoryVersionedStore(codec, retention=SHORT),
              "default": MemoryVersionedStore(codec, retention=DEFAULT)}
    lines = []
    for index, key, op, n, event_time in ops:
        if op == "retain":  # what a restart with another retention does
            stores["short"].checkpoint(tmp / str(index))
            stores["short"] = MemoryVersionedStore.restore(tmp / str(index), codec, retention=RETAIN[n])
        line: dict[str, Any] = {"index": index, "key": key}
        for name, store in stores.items():
            line[name] = observe(store.key(key), lambda s=store, k=key: s.delete(k), op, n, event_time, index)
        lines.append(line)
    return lines


@pytest.fixture(scope="module")
def flink_env() -> Iterator[Any]:
    """A local StreamExecutionEnvironment in thread mode with the RocksDB state backend."""
    # Thread mode embeds CPython in the JVM (pemja); that interpreter does not know this venv, so the
    # venv's site-packages, the repo and this folder go on its PYTHONPATH (read when the JVM starts).
    paths = [sysconfig.get_paths()["purelib"], str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))
        from pyflink.common import Configuration
        from pyflink.datastream import StreamExecutionEnvironment

        config = Configuration()
        for key, value in flink_state_configuration().items():
            config.set_string(key, value)
        config.set_string("python.executable", sys.executable)
        env = StreamExecutionEnvironment.get_execution_environment(config)
        env.set_parallelism(1)
        yield env


def _run(flink_env: Any, ops: list[Any], types: list[Any], key_field: int, probe: Any) -> list[Any]:
    from pyflink.common import Types

    stream = flink_env.from_collection(ops, type_info=Types.TUPLE(types))
    results = stream.key_by(lambda op: op[key_field], key_type=Types.STRING()).process(
        probe, output_type=Types.STRING()
    )
    with results.execute_and_collect() as lines:
        return [msgspec.json.decode(line) for line in lines]


def test_flink_versioned_state_matches_the_reference(flink_env: Any, tmp_path: Path) -> None:
    from pyflink.common import Types

    ops = _operations(500)
    got = _run(flink_env, ops, [Types.INT(), Types.STRING(), Types.STRING(), Types.INT(), Types.LONG()], 1,
               VersionedStateProbe())
    got.sort(key=lambda line: line["index"])
    python_state, java_state = got[0].pop("runtime")
    assert python_state.startswith("pyflink.fn_execution.datastream.embedded.")  # thread mode
    assert java_state.startswith("org.apache.flink.state.rocksdb.RocksDB")  # RocksDB state backend
    # records physically stored: never fewer than retained, never more than the ring (no leak)
    ring = SHORT.max_versions
    for line in got:
        stored = line.pop("short_stored")
        if line["short"]["op"] == "retain":
            ring = RETAIN[ops[line["index"]][3]].max_versions
            continue  # the old ring's records move on the key's next put
        retained = len(line["short"]["hist"])
        assert retained <= stored <= max(ring, 5), line["index"]  # type: ignore[type-var]
    expected = _reference(ops, tmp_path)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"operation {e['index']} on {e['key']} differs"
    # the run exercised what it is meant to: pruning, clears, late events answered from history, side entries
    assert any(line["short"].get("old") is None and line["short"].get("v", 0) > 4 for line in got)
    assert any(line["short"]["op"] == "clear" for line in got)
    assert any(line["short"]["op"] == "forget" for line in got)
    assert any(a["key"] == b["key"] and a["short"]["op"] == "forget" and b["short"].get("v") == 1
               for a, b in itertools.pairwise(got))  # a put right after a forget starts again at version 1
    assert any(line["default"].get("t_early") not in (None, line["default"].get("get")) for line in got)
    sides = [line["short"]["sides"] for line in got]
    assert any(s[0] is not None for s in sides) and any(s[1] is not None for s in sides)
    retains = [line["index"] for line in got if line["short"]["op"] == "retain"]
    assert len(retains) == 2
    # after the ring grew to 5, a key kept more than 3 versions; after it shrank to 2, none kept more than 2
    assert any(len(line["short"]["hist"]) == 4 for line in got[retains[0]:retains[1]])
    assert all(len(line["short"]["hist"]) <= 2 for line in got[retains[1]:] if line["short"]["op"] == "put")


def test_layout1_state_is_converted_on_first_touch(flink_env: Any) -> None:
    """Keys written by the layout-1 writer (head + history list, the adapter of 5043d14) read and continue exactly
    like the same versions written through the reference store, and the layout-1 states are cleared."""
    from pyflink.common import Types

    # "a" keeps its 3 retained versions after 12 layout-1 puts (a history compaction ran), "b" has one version,
    # "c" eight versions of which the horizon keeps some
    ops = [("a", "layout1", 12, 1000), ("b", "layout1", 1, 2000), ("c", "layout1", 8, 3000),
           ("a", "put", 40, 1010), ("b", "put", 41, 1990), ("a", "put", 42, 1020), ("c", "side", 4, 0),
           ("c", "put", 43, 3005), ("c", "forget", 0, 0), ("c", "put", 44, 3050)]
    got = _run(flink_env, ops, [Types.STRING(), Types.STRING(), Types.INT(), Types.LONG()], 0, Layout1Probe())
    reference = MemoryVersionedStore(MsgpackCodec(Value), retention=SHORT)
    expected = []
    for key, op, n, event_time in ops:
        if op == "layout1":
            for i in range(1, n + 1):
                reference.key(key).put(value_of(i), event_time=event_time + i,
                                       source=SourceCoordinates("probe", 0, i - 1))
            expected.append({"key": key, "op": op})
        else:
            seen = observe(reference.key(key), lambda k=key: reference.delete(k), op, n, event_time, 99)
            expected.append({"key": key, "op": op, "seen": seen, "layout1_left": False})
    for key in "abc":
        assert [line for line in got if line["key"] == key] == [line for line in expected if line["key"] == key]
    first_a = next(line for line in got if line["key"] == "a" and line["op"] == "put")
    assert first_a["seen"]["v"] == 13 and first_a["seen"]["prev"] is not None  # continued from version 12


def test_a_put_on_a_cached_key_makes_at_most_two_state_calls(flink_env: Any) -> None:
    """Per event as the job does it (get, an inline side entry, put, flush): a key's first event reads its head
    and the layouts before it; every later event makes one slot put and one head update, and reads nothing."""
    from pyflink.common import Types

    ops = [(f"k{i % 4}", i, 1_000 + i) for i in range(60)]
    got = _run(flink_env, ops, [Types.STRING(), Types.INT(), Types.LONG()], 0, CountingProbe())
    got.sort(key=lambda line: line["n"])
    first = {line["key"]: line["calls"] for line in reversed(got)}
    for calls in first.values():  # h2, then layout 1 and the blob: absent
        assert calls == {"h2.value": 1, "old_head.value": 1, "old_blob.value": 1, "slots.put": 1, "h2.update": 1}
    steady = [line["calls"] for line in got[4:]]
    assert all(calls == {"slots.put": 1, "h2.update": 1} for calls in steady), steady
