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
import numpy as np
import pytest
from flink_probe import DEFAULT, SHORT, LegacyLayoutProbe, Value, VersionedStateProbe, observe

from state import MemoryVersionedStore, MsgpackCodec, SourceCoordinates
from state.flink_state import MIN_SLACK, flink_state_configuration

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _operations(count: int, seed: int = 20260523) -> list[tuple[int, str, str, int, int]]:
    """(index, key, op, n, event_time): event times drift upward with jitter (so often out of order)."""
    rng = random.Random(seed)
    clock = 1_700_000_000_000
    ops = []
    for index in range(count):
        clock += rng.randint(0, 10)
        draw = rng.random()
        op = "clear" if draw < 0.04 else "forget" if draw < 0.07 else "put"
        event_time = clock - rng.choice([0, 0, 5, 30])
        ops.append((index, f"acct-{rng.randint(0, 4)}", op, rng.randint(0, 1000), event_time))
    return ops


def _reference(ops: list[tuple[int, str, str, int, int]]) -> list[dict[str, Any]]:
    codec = MsgpackCodec(Value)
    stores = {"short": MemoryVersionedStore(codec, retention=SHORT),
              "default": MemoryVersionedStore(codec, retention=DEFAULT)}
    lines = []
    for index, key, op, n, event_time in ops:
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


def test_flink_versioned_state_matches_the_reference(flink_env: Any) -> None:
    from pyflink.common import Types

    ops = _operations(400)
    stream = flink_env.from_collection(
        ops, type_info=Types.TUPLE([Types.INT(), Types.STRING(), Types.STRING(), Types.INT(), Types.LONG()])
    )
    results = (
        stream.key_by(lambda op: op[1], key_type=Types.STRING())
        .process(VersionedStateProbe(), output_type=Types.STRING())
    )
    with results.execute_and_collect() as lines:
        got = sorted((msgspec.json.decode(line) for line in lines), key=lambda line: line["index"])
    python_state, java_state = got[0].pop("runtime")
    assert python_state.startswith("pyflink.fn_execution.datastream.embedded.")  # thread mode
    assert java_state.startswith("org.apache.flink.state.rocksdb.RocksDB")  # RocksDB state backend
    # the history list is pruned lazily: it never holds fewer records than are retained, nor more than the
    # retention plus its slack (no leak), and it was pruned during the run
    most = SHORT.max_versions + max(SHORT.max_versions, MIN_SLACK)  # type: ignore[operator]
    stored = [line.pop("short_stored") for line in got]
    for line, count in zip(got, stored, strict=True):
        assert max(0, len(line["short"]["hist"]) - 1) <= count <= most, line["index"]
    by_key: dict[str, list[int]] = {}
    for line, count in zip(got, stored, strict=True):
        by_key.setdefault(line["key"], []).append(count)
    assert any(
        later < earlier for counts in by_key.values() for earlier, later in itertools.pairwise(counts)
        if earlier == most
    )
    expected = _reference(ops)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g == e, f"operation {e['index']} on {e['key']} differs"
    # the run exercised what it is meant to: pruning, clears, late events answered from history
    assert any(line["short"].get("old") is None and line["short"].get("v", 0) > 4 for line in got)
    assert any(line["short"]["op"] == "clear" for line in got)
    assert any(line["short"]["op"] == "forget" for line in got)
    # a put right after a forget starts again at version 1
    assert any(a["key"] == b["key"] and a["short"]["op"] == "forget" and b["short"].get("v") == 1
               for a, b in itertools.pairwise(got))
    assert any(
        line["default"].get("t_early") not in (None, line["default"].get("get")) for line in got
    )


def test_state_of_the_earlier_blob_layout_is_converted_on_first_read(flink_env: Any) -> None:
    """Keys written as one `<name>/versions` blob (before the head + history-list layout) read and extend
    exactly like the same versions written through the reference store, and the blob is removed."""
    from pyflink.common import Types

    ops = [("a", "legacy", 3, 1000), ("b", "legacy", 1, 2000), ("a", "put", 40, 1010), ("b", "put", 41, 1990),
           ("a", "put", 42, 1020)]
    stream = flink_env.from_collection(
        ops, type_info=Types.TUPLE([Types.STRING(), Types.STRING(), Types.INT(), Types.LONG()])
    )
    results = stream.key_by(lambda op: op[0], key_type=Types.STRING()).process(
        LegacyLayoutProbe(), output_type=Types.STRING()
    )
    with results.execute_and_collect() as lines:
        got = [msgspec.json.decode(line) for line in lines]
    codec = MsgpackCodec(Value)
    reference = MemoryVersionedStore(codec, retention=SHORT)
    expected = []
    for key, op, n, event_time in ops:
        if op == "legacy":
            for i in range(1, n + 1):
                reference.key(key).put(Value(i, np.full(3, i / 4, dtype=np.float32)), event_time=event_time + i,
                                       source=SourceCoordinates("probe", 0, i - 1))
            expected.append({"key": key, "op": op})
        else:
            seen = observe(reference.key(key), lambda k=key: reference.delete(k), op, n, event_time, 99)
            expected.append({"key": key, "op": op, "seen": seen, "legacy_left": False})
    assert [line for line in got if line["key"] == "a"] == [line for line in expected if line["key"] == "a"]
    assert [line for line in got if line["key"] == "b"] == [line for line in expected if line["key"] == "b"]
    assert got[2]["seen"]["v"] == 4 and got[2]["seen"]["prev"] is not None  # continued from version 3
