"""Keyed-function variants for `job_bench.py` (imported by the Flink job's embedded interpreter).

Each replaces the risk job's keyed function to isolate one cost: the engine path alone (`Passthrough`),
versioned Flink state without the model (`StateOnly`), and operator + model without Flink state (`NoFlinkState`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Row

from pipelines.runtimes.flink.functions import KeyedOperatorFunction


class Passthrough(KeyedOperatorFunction):
    """Emits the raw value: Kafka source, key in SQL, keyed hop and sinks, nothing else."""

    def process_element(self, row: Row, ctx: Any) -> Iterator[Any]:
        yield Row(row[5], bytes(row[0]).decode())


class StateOnly(KeyedOperatorFunction):
    """Reads and writes one version of versioned Flink state per event; no features, no model."""

    def process_element(self, row: Row, ctx: Any) -> Iterator[Any]:
        if self._operator is None:
            self._open_operator()
        self._state.set_current_key(row[5])  # as the real function does: the key from the row, cached heads
        latest = self._state.get()
        value = latest.value if latest is not None else self._spec.state_codec.value_type()  # type: ignore[attr-defined]
        version = self._state.put(value, event_time=0, source=None)
        self._state.flush()
        yield Row(row[5], str(version))


class NoFlinkState(KeyedOperatorFunction):
    """The full operator and model, with an in-memory store instead of Flink keyed state."""

    def process_element(self, row: Row, ctx: Any) -> Iterator[Any]:
        if self._operator is None:
            self._open_operator()
            from state import MemoryVersionedStore

            self._memory = MemoryVersionedStore(codec=self._spec.state_codec)
        key = row[5]
        event = self._decoder.decode(bytes(row[0]))
        for result in self._operator.process(event, self._memory.key(key), None):
            yield Row(key, self._spec.encode_result(result).decode())
