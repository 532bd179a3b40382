"""Property tests: random sequences of puts, deletes, batches and reopen against `ModelStore`, per backend.

Event times come from a small range so that out-of-order events and ties are frequent; retention is
drawn per run (count limit, horizon, both, neither).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from state import RetentionPolicy, SourceCoordinates
from tests.unit.state.state_testkit import AnyStore, Backend, MemoryBackend, ModelStore, RocksBackend, as_tuple

KEYS = st.sampled_from(["a", "b", "c", "d"])
SIDE_NAMES = st.sampled_from(["ids", "ids/1", "x"])
SIDE_VALUES = st.none() | st.binary(max_size=12)
TIMES = st.integers(min_value=0, max_value=40)
INTS = st.integers(-(2**63), 2**63 - 1)  # msgpack's integer range
VALUES = st.one_of(INTS, st.text(max_size=5), st.lists(INTS, max_size=3))
SOURCES = st.none() | st.builds(
    SourceCoordinates, st.just("events"), st.integers(0, 3), st.integers(0, 10**6)
)
RETENTIONS = st.builds(
    RetentionPolicy,
    max_versions=st.none() | st.integers(min_value=1, max_value=5),
    horizon_ms=st.none() | st.integers(min_value=0, max_value=25),
)


class Aborted(Exception):
    """Raised inside a write batch to abort it."""


class VersionedStoreMachine(RuleBasedStateMachine):
    """Drives one backend and the model with the same operations and compares every read."""

    backend_type: type[Backend]

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="state-props-"))
        self.backend = self.backend_type(self.root)
        self.store: AnyStore | None = None
        self.model: ModelStore | None = None

    @initialize(retention=RETENTIONS)
    def open_store(self, retention: RetentionPolicy) -> None:
        self.store = self.backend.open(retention)
        self.model = ModelStore(retention)

    @property
    def s(self) -> AnyStore:
        assert self.store is not None
        return self.store

    @property
    def m(self) -> ModelStore:
        assert self.model is not None
        return self.model

    @rule(key=KEYS, value=VALUES, event_time=TIMES, source=SOURCES)
    def put(self, key: str, value: Any, event_time: int, source: SourceCoordinates | None) -> None:
        version = self.s.key(key).put(value, event_time=event_time, source=source)
        assert version == self.m.put(key, value, event_time, source)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.s.delete(key)
        self.m.delete(key)

    @rule(key=KEYS)
    def forget(self, key: str) -> None:
        self.s.forget(key)
        self.m.forget(key)

    @rule(key=KEYS, name=SIDE_NAMES, value=SIDE_VALUES, inline=st.booleans())
    def put_side(self, key: str, name: str, value: bytes | None, inline: bool) -> None:
        self.s.key(key).put_side(name, value, inline=inline)
        self.m.put_side(key, name, value)

    @rule(key=KEYS, name=SIDE_NAMES)
    def read_side(self, key: str, name: str) -> None:
        assert self.s.key(key).side(name) == self.m.side(key, name)

    @rule(
        ops=st.lists(st.tuples(KEYS, TIMES, st.booleans()), min_size=1, max_size=6),
        abort=st.booleans(),
        check_key=KEYS,
        check_time=TIMES,
    )
    def batch(self, ops: list[tuple[str, int, bool]], abort: bool, check_key: str, check_time: int) -> None:
        """Several puts/deletes in one write batch, reading inside it; aborted batches change nothing."""
        shadow = self.m.copy()
        try:
            with self.s.write_batch():
                for i, (key, event_time, is_delete) in enumerate(ops):
                    if is_delete:
                        self.s.delete(key)
                        shadow.delete(key)
                    else:
                        assert self.s.key(key).put(i, event_time=event_time) == shadow.put(key, i, event_time)
                        self.s.key(key).put_side("ids", bytes([i]), inline=i % 2 == 0)
                        shadow.put_side(key, "ids", bytes([i]))
                self._compare_key(shadow, check_key, check_time)
                if abort:
                    raise Aborted
        except Aborted:
            return
        self.model = shadow

    @precondition(lambda self: self.store is not None)
    @rule()
    def reopen(self) -> None:
        self.store = self.backend.reopen(self.s)

    @precondition(lambda self: self.store is not None)
    @rule(retention=RETENTIONS)
    def reopen_with_other_retention(self, retention: RetentionPolicy) -> None:
        """Retention (and so the ring of record slots) changes from each key's next put."""
        self.store = self.backend.reopen(self.s, retention)
        self.m.retention = retention

    @rule(key=KEYS, event_time=st.integers(min_value=-1, max_value=42), version=st.integers(0, 30))
    def read(self, key: str, event_time: int, version: int) -> None:
        state, model = self.s.key(key), self.m
        assert as_tuple(state.as_of_time(event_time)) == as_tuple(model.as_of_time(key, event_time))
        assert as_tuple(state.as_of(version)) == as_tuple(model.as_of(key, version))

    @rule(key=KEYS, limit=st.integers(0, 8))
    def history(self, key: str, limit: int) -> None:
        assert [as_tuple(v) for v in self.s.key(key).history(limit)] == [
            as_tuple(v) for v in self.m.history(key, limit)
        ]

    @invariant()
    def latest_and_keys_agree(self) -> None:
        if self.store is None:
            return
        assert set(self.s.keys()) == self.m.live_keys()
        for key in self.m.live_keys():
            assert as_tuple(self.s.key(key).get()) == as_tuple(self.m.get(key))
        for key in ("a", "b", "c", "d"):
            for name in ("ids", "ids/1", "x"):
                assert self.s.key(key).side(name) == self.m.side(key, name)

    def _compare_key(self, model: ModelStore, key: str, event_time: int) -> None:
        state = self.s.key(key)
        assert as_tuple(state.get()) == as_tuple(model.get(key))
        assert [as_tuple(v) for v in state.history(100)] == [as_tuple(v) for v in model.history(key, 100)]
        assert as_tuple(state.as_of_time(event_time)) == as_tuple(model.as_of_time(key, event_time))

    def teardown(self) -> None:
        try:
            if self.store is not None:
                for key in sorted(self.m.live_keys() | {"a", "b", "c", "d"}):
                    for t in range(-1, 42):
                        self._compare_key(self.m, key, t)
                    for v in range(0, self.m.last_version.get(key, 0) + 2):
                        assert as_tuple(self.s.key(key).as_of(v)) == as_tuple(self.m.as_of(key, v))
        finally:
            if self.store is not None:
                self.store.close()
            shutil.rmtree(self.root, ignore_errors=True)


PROPERTY_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class MemoryMachine(VersionedStoreMachine):
    backend_type = MemoryBackend


class RocksMachine(VersionedStoreMachine):
    backend_type = RocksBackend


TestMemoryStoreAgainstModel = MemoryMachine.TestCase
TestMemoryStoreAgainstModel.settings = PROPERTY_SETTINGS
TestRocksStoreAgainstModel = RocksMachine.TestCase
TestRocksStoreAgainstModel.settings = PROPERTY_SETTINGS
