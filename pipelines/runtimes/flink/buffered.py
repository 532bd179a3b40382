"""The Python side of the buffering keyed operator (`--operator buffered`): one call per buffer of records.

The Java operator (`pipelines/runtimes/flink/java`, `io.streamscore.flink.BufferedPythonOperator`) buffers the
keyed records, reads the heads and latest version records of the buffer's keys from Flink keyed state, and calls
`BufferedStep.process` once with the records and those reads. The step decodes each record (a rejection or an
ambiguous key is a dead letter), runs the valid ones through the pipeline's operator together
(`operators.batching.apply_operator_batch`, the faust runtime's step: one model call per buffer for risk, one per
wave of distinct sessions for reco; every outcome identical to one event at a time), and returns what Java applies:
output rows (results and dead letters in record order, after them the buffer's state changelog rows) and the state
writes, coalesced per key (`pipelines.runtimes.flink.buffer_state`). The versioned state is the per-record job's
`FlinkVersionedState` (same layout, same Flink states, same head cache) over those stand-in states, so the two
operators read and write the same bytes and a savepoint of one restores into the other.

Metrics keep their names (`pipelines.runtimes.flink.counters`, the latency gauges, `model_version`): the Java metric
group is wrapped as PyFlink's thread mode wraps it; counts are added to Flink's counters at most once a second (at
a buffer, or when the operator is idle, from Java). TTL sweeps use the same per-key processing-time timers
(`on_timer`), registered with the buffer's writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from operators.dead_letter import dead_letter_json
from pipelines.runtimes.flink.buffer_state import BufferStates
from pipelines.runtimes.flink.buffer_wire import CHANGELOG, DEAD_LETTER, RESULT, RowWriter, pack_writes
from pipelines.runtimes.flink.functions import (
    _HEAVY_IMPORTS,
    METRICS_FLUSH_MS,
    _import_native_extensions,
    _run_in_python_thread,
)
from pipelines.runtimes.hot_swap import report_swaps
from state.contract import SourceCoordinates, StateVersion


def step_arguments(
    pipeline: str, model_ref: str | None, *, changelog: bool, config_path: str | None,
    code_fingerprint: str | None,
) -> str:
    """The JSON arguments the Java operator hands `BufferedStep` (the job's only Python configuration)."""
    return json.dumps({
        "pipeline": pipeline, "model_ref": model_ref, "changelog": changelog, "config_path": config_path,
        "code_fingerprint": code_fingerprint,
    })


class _BufferKeyStore:
    """The key-addressed store (`state._handle.KeyAddressedStore`) of one buffer over `FlinkVersionedState`.

    Each call names its key; switching keys flushes the previous key's head and collects what it changed for the
    state changelog (versions in write order, side entries as the buffer left them). A put also advances the TTL
    clock, and a key's first version gets its sweep timer (as in the per-record job).
    """

    def __init__(self, state: Any, states: BufferStates, clock: Any, changelog: bool) -> None:
        self._state = state
        self._states = states
        self._clock = clock
        self._changelog = changelog
        self._current: str | None = None
        self.versions: list[tuple[str, bytes]] = []
        self.sides: dict[tuple[str, str], tuple[bytes | None, bool]] = {}

    def use(self, key: str) -> Any:
        """The versioned state, acting on `key`."""
        if key != self._current:
            self.finish()
            self._state.set_current_key(key)
            self._states.select(key)
            self._current = key
        return self._state

    def finish(self) -> None:
        """Flush the current key's head and collect its changes."""
        current = self._current
        if current is None:
            return
        state = self._state
        state.flush()
        written, sides = state.take_changes()
        if self._changelog:
            self.versions.extend((current, record) for record in written)
            for name, change in sides.items():
                self.sides[(current, name)] = change
        self._current = None

    def get(self, key: str) -> StateVersion[Any] | None:
        return self.use(key).get()

    def put(self, key: str, value: Any, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        version: int = self.use(key).put(value, event_time=event_time, source=source)
        clock = self._clock
        if clock is not None:
            now = int(time.time() * 1000)
            clock.saw(event_time, now)
            if version == 1:
                self._states.register_timer(key, clock.first_check_ms_for(event_time, now))
        return version

    def as_of(self, key: str, version: int) -> StateVersion[Any] | None:
        return self.use(key).as_of(version)

    def as_of_time(self, key: str, event_time: int) -> StateVersion[Any] | None:
        return self.use(key).as_of_time(event_time)

    def history(self, key: str, limit: int) -> list[StateVersion[Any]]:
        return self.use(key).history(limit)

    def forget(self, key: str) -> None:
        self.use(key).forget()

    def side(self, key: str, name: str) -> bytes | None:
        return self.use(key).side(name)

    def put_side(self, key: str, name: str, value: bytes | None, *, inline: bool = False) -> None:
        self.use(key).put_side(name, value, inline=inline)


class BufferedStep:
    """What the Java operator calls: `process` per buffer, `on_timer` per fired timer, `flush_metrics`, `close`.

    `arguments` is `step_arguments(...)`'s JSON, `metrics` the operator's Java metric group, `reader` its
    `StateReader`. The pipeline's operator opens on the first buffer (not while the job's tasks are still
    initialising the embedded interpreter: see `pipelines.runtimes.flink.functions`).
    """

    def __init__(self, arguments: str, metrics: Any, reader: Any) -> None:
        args = json.loads(arguments)
        self.pipeline: str = args["pipeline"]
        self._model_ref: str | None = args["model_ref"]
        self._changelog: bool = bool(args["changelog"])
        self._config_path: str | None = args["config_path"]
        self._code_fingerprint: str | None = args["code_fingerprint"]
        self._j_metrics = metrics
        self._states = BufferStates(reader)
        self._rows = RowWriter()
        self._operator: Any = None

    # -- opening --------------------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._code_fingerprint is not None:
            from pipelines.runtimes.flink.job_files import check_loaded_code

            check_loaded_code(self._code_fingerprint)
        with _HEAVY_IMPORTS:
            _run_in_python_thread(_import_native_extensions)
            from operators.contract import OperatorContext
            from pipelines.registry import get

            spec = get(self.pipeline)
            config = spec.load_config(Path(self._config_path) if self._config_path else None)
            operator = spec.operator_from_config(config)
            _run_in_python_thread(lambda: operator.open(OperatorContext(model_ref=self._model_ref)))
        from operators.batching import BatchItem, apply_operator_batch
        from operators.core import Failure
        from operators.decoding import Rejection
        from pipelines.kafka.changelog_format import side_value, version_value
        from pipelines.runtimes.expiry import EventClock
        from state._handle import KeyState
        from state.flink_state import FlinkVersionedState

        self._spec = spec
        self._decoder = spec.decoder()
        self._key_of = spec.key_of
        self._result_key = spec.result_key
        self._encode = spec.encode_result
        self._rejection = Rejection
        self._failure = Failure
        self._item = BatchItem
        self._apply_batch = apply_operator_batch
        self._key_state = KeyState
        self._version_value = version_value
        self._side_value = side_value
        self._refresh_s = float(config.model_refresh_seconds)
        self._next_refresh = time.monotonic() + self._refresh_s
        ttl_ms = config.state.ttl_ms
        self._clock = None if ttl_ms is None else EventClock(ttl_ms, config.state.sweep_check_seconds * 1000)
        self._state = FlinkVersionedState(
            self._states, self.pipeline, spec.state_codec(), retention=config.state.retention_policy()
        )
        self._store = _BufferKeyStore(self._state, self._states, self._clock, self._changelog)
        self._operator = operator
        from pyflink.fn_execution.metrics.embedded.metric_impl import MetricGroupImpl

        from pipelines.runtimes.flink.counters import OperatorCounters
        from pipelines.runtimes.flink.latency import LatencyWindow

        group = MetricGroupImpl(self._j_metrics)
        self._counters = OperatorCounters(group, operator)
        self._next_metrics_flush = time.monotonic() + METRICS_FLUSH_MS / 1000
        self._latency = LatencyWindow()
        self._latency.register(self._counters, group)
        model = getattr(operator, "model", None)
        if model is not None:
            self._counters.add_gauge(group.add_group("model", str(model.ref).partition("@")[0]), "model_version",
                                     self._model_version)
        from pipelines.runtimes.gc_tuning import tune_for_scoring

        tune_for_scoring()  # PyFlink, the model and the operator, frozen out of every collection

    def _model_version(self) -> int:
        version = str(self._operator.model.ref).rpartition("@")[2]
        return int(version) if version.isdigit() else 0

    def _refresh_models(self) -> None:
        self._next_refresh = time.monotonic() + self._refresh_s
        swaps: list[Any] = []
        _run_in_python_thread(lambda: swaps.extend(self._operator.refresh_models()))
        counts = report_swaps(self.pipeline, swaps)
        self._counters.swaps += counts.swapped
        self._counters.swap_failures += counts.failed

    # -- the calls from Java -----------------------------------------------------------------------------------

    def process(
        self, values: Sequence[bytes | None], topics: Sequence[str], partitions: Sequence[int],
        offsets: Sequence[int], stamps: Sequence[int], keys: Sequence[str], heads_of: Sequence[str],
        heads: Sequence[bytes | None], latest: Sequence[bytes | None], status: Sequence[int],
    ) -> tuple[bytes, bytes]:
        """One buffer: records i = (values[i], topics[i], partitions[i], offsets[i], stamps[i] (Kafka timestamp
        ms of a latency sample, else -1), keys[i] (the Flink key)); `heads_of` the buffer's distinct keys with
        their pre-read `heads`, `latest` records and `status`. Returns (output rows, state writes), packed as
        `buffer_wire` describes."""
        if self._operator is None:
            self._open()
        now = time.monotonic()
        if now >= self._next_metrics_flush:
            self.flush_metrics()
        if self._refresh_s > 0 and now >= self._next_refresh:
            self._refresh_models()
        self._states.begin(tuple(heads_of), tuple(heads), tuple(latest), tuple(status))
        decode, key_of, rejection, item_of = self._decoder.decode, self._key_of, self._rejection, self._item
        store, key_state = self._store, self._key_state
        slots: list[Any] = []  # per record: a BatchItem, or (reason, error) of its dead letter
        items = []
        for i, value in enumerate(values):
            raw = b"" if value is None else value
            event = decode(raw)
            if isinstance(event, rejection):
                slots.append((event.reason, event.error))
                continue
            key = key_of(event)
            if key != keys[i]:  # JSON_VALUE read another key than the decoder (e.g. a duplicated field)
                slots.append(("invalid_value", f"ambiguous key: the record was keyed by {keys[i]!r} but decodes "
                              f"to {key!r}"))
                continue
            item = item_of(key, event, key_state(store, key), SourceCoordinates(topics[i], partitions[i], offsets[i]))
            slots.append(item)
            items.append(item)
        outcomes = iter(self._apply_batch(self._operator, items))
        store.finish()
        rows = self._rows
        counters, failure, encode, result_key = self._counters, self._failure, self._encode, self._result_key
        for i, slot in enumerate(slots):
            if type(slot) is tuple:  # (reason, error); a BatchItem is a NamedTuple, never exactly a tuple
                self._dead_letter(rows, slot[0], slot[1], values[i], topics[i], partitions[i], offsets[i])
                continue
            outcome = next(outcomes)
            if isinstance(outcome, failure):
                self._dead_letter(rows, outcome.reason, outcome.error, values[i], topics[i], partitions[i],
                                  offsets[i])
                continue
            if outcome and stamps[i] >= 0:
                self._latency.record(stamps[i])
            counters.scored += len(outcome)
            for result in outcome:
                decision = getattr(result, "decision", None)
                if decision is not None:
                    counters.count_decision(decision)
                rows.add(RESULT, result_key(result), encode(result))
        self._changelog_rows(rows)
        return rows.take(), pack_writes(self._states.take_writes())

    def _dead_letter(
        self, rows: RowWriter, reason: str, error: str, value: bytes | None, topic: str, partition: int,
        offset: int,
    ) -> None:
        self._counters.count_dead_letter(reason)
        raw = b"" if value is None else value
        letter = dead_letter_json(self.pipeline, reason, error, raw, topic=topic, partition=partition, offset=offset)
        rows.add(DEAD_LETTER, None, letter)

    def _changelog_rows(self, rows: RowWriter) -> None:
        store = self._store
        if not self._changelog:
            return
        for key, record in store.versions:
            rows.add(CHANGELOG, key, self._version_value(record))
        for (key, name), (value, inline) in store.sides.items():
            rows.add(CHANGELOG, key, self._side_value(name, value, inline=inline))
        store.versions.clear()
        store.sides.clear()

    def on_timer(self, key: str, timestamp: int) -> tuple[bytes, bytes]:
        """A key's sweep timer (or a per-record job's metrics timer, restored): remove the key's state if its
        event clock is two TTLs past the key's newest event (a tombstone goes to the changelog), else check
        again when it will be."""
        if self._operator is None:
            self._open()
        rows = self._rows
        self._states.begin((), (), (), ())
        if self._clock is None:
            return rows.take(), b""
        state = self._store.use(key)
        newest = state.newest_event_time()
        if newest is not None:
            if self._clock.due(newest):
                state.forget()
                self._counters.swept += 1
                if self._changelog:
                    rows.add(CHANGELOG, key, None)
            else:
                self._states.register_timer(key, self._clock.next_check_ms(newest, timestamp))
        self._store.finish()
        self._store.versions.clear()
        self._store.sides.clear()
        return rows.take(), pack_writes(self._states.take_writes())

    def flush_metrics(self) -> None:
        """Add the pending counts to Flink's counters (at most once a second; Java calls it when idle)."""
        if self._operator is None:
            return
        self._next_metrics_flush = time.monotonic() + METRICS_FLUSH_MS / 1000
        self._counters.flush()

    def close(self) -> None:
        """Flush the counters and close the pipeline's operator."""
        if self._operator is not None:
            self._counters.flush()
            self._operator.close()
            self._operator = None
