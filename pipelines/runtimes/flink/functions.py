"""The PyFlink function of every pipeline: one keyed operator that decodes (or dead-letters) each record and
runs the pipeline's operator on the versioned state of the record's key.

Records arrive keyed by the JVM (`pipelines.runtimes.flink.keying`), so this is the only Python a record passes
through. The function looks its pipeline up by name in `open`, so only names and options are serialised
with the job. Bad records never raise: they leave through the dead-letter side output with a stable reason.

Thread mode runs every Python operator in one embedded interpreter (pemja), and Flink opens operators
concurrently (with parallelism > 1, several subtasks of this function). Importing onnxruntime's extension
while another task thread is inside pemja's interpreter initialisation deadlocks both (seen here with
PyFlink 2.2.1: one thread in `PythonInterpreter.init`, the other in onnxruntime's `create_module`, forever).
So the heavy imports (numpy, onnxruntime, the operator and model) happen on the first element, when every
task of the job has finished initialising, one thread at a time (`_HEAVY_IMPORTS`).

Per event the function crosses into the JVM as little as it can: the key comes with the element (the source
query puts it in the row, `pipelines.runtimes.flink.keying`), the versioned state serves heads from its cache and
writes one record and one head (`state.flink_state`), and the metric counters are accumulated in Python ints and
added to Flink's counters at most once a second (on an element, on a processing-time timer registered for that
purpose, and at close), so a scrape may lag the job by up to a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext

from operators.dead_letter import dead_letter_json
from pipelines.runtimes.hot_swap import report_swaps

if TYPE_CHECKING:
    from pipelines.registry import PipelineDefinition
    from pipelines.runtimes.expiry import EventClock

_HEAVY_IMPORTS = threading.Lock()


def _import_native_extensions() -> None:
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401


def _run_in_python_thread(work: Any) -> None:
    """Run `work` in a thread started by Python's `threading`, re-raising its exception here.

    pemja's task threads have thread states that `PyGILState_Ensure` does not know, so pybind11 code
    (onnxruntime's module initialisation and session creation) deadlocks on them; a `threading` thread
    has a registered thread state and runs that code normally.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="streamscore-native-init", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]

OUTPUT_ROW = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
#: The state changelog's rows: the state key and the binary value (`pipelines.kafka.changelog_format`; None: a
#: tombstone).
CHANGELOG_ROW = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
DEAD_LETTERS = OutputTag("dead-letters", OUTPUT_ROW)
STATE_CHANGELOG = OutputTag("state-changelog", CHANGELOG_ROW)
#: How often the counters accumulated in Python are added to Flink's metric counters (at most).
METRICS_FLUSH_MS = 1000


def dead_letter_row(
    pipeline: str, reason: str, error: str, raw: bytes, topic: str | None, partition: int | None,
    offset: int | None,
) -> Row:
    """A dead-letter output row (no key) for `raw`."""
    return Row(None, dead_letter_json(pipeline, reason, error, raw, topic=topic, partition=partition,
                                      offset=offset).decode())


class KeyedOperatorFunction(KeyedProcessFunction):
    """Runs the pipeline's operator on each event with the versioned state of the event's key."""

    def __init__(
        self, pipeline: str, model_ref: str | None, *, changelog: bool = False, config_path: str | None = None,
        code_fingerprint: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.code_fingerprint = code_fingerprint  # a cluster job: refuse other code than the client's
        self.model_ref = model_ref
        self.changelog = changelog
        self.config_path = config_path

    def open(self, runtime_context: RuntimeContext) -> None:
        """Remember the runtime context; the operator itself opens on the first element (see module doc).

        Flink calls `open` on every (re)start of the task, after a restore or failover too, so the versioned
        state and its cache of heads are always created anew from Flink's state."""
        self._runtime_context = runtime_context
        self._operator: Any = None
        self._metrics_timer: tuple[str, int] | None = None

    def _open_operator(self) -> None:
        if self.code_fingerprint is not None:
            from pipelines.runtimes.flink.job_files import check_loaded_code

            check_loaded_code(self.code_fingerprint)
        with _HEAVY_IMPORTS:
            _run_in_python_thread(_import_native_extensions)
            from operators.contract import OperatorContext
            from operators.core import Failure, apply_operator
            from pipelines.registry import get
            from state.contract import SourceCoordinates
            from state.flink_state import FlinkVersionedState

            self._spec: PipelineDefinition = get(self.pipeline)
            config = self._spec.load_config(Path(self.config_path) if self.config_path else None)
            operator = self._spec.operator_from_config(config)
            _run_in_python_thread(lambda: operator.open(OperatorContext(model_ref=self.model_ref)))
        self._refresh_s = float(config.model_refresh_seconds)
        self._next_refresh = time.monotonic() + self._refresh_s
        from pipelines.kafka.changelog_format import side_value, version_value

        self._apply = apply_operator
        self._failure = Failure
        self._coordinates = SourceCoordinates
        self._version_value = version_value
        self._side_value = side_value
        from operators.decoding import Rejection

        self._decoder = self._spec.decoder()
        self._rejection = Rejection
        self._key_of = self._spec.key_of
        self._state = FlinkVersionedState(
            self._runtime_context, self.pipeline, self._spec.state_codec(), retention=config.state.retention_policy()
        )
        from pipelines.runtimes.expiry import EventClock

        ttl_ms = config.state.ttl_ms
        self._clock = None if ttl_ms is None else EventClock(ttl_ms, config.state.sweep_check_seconds * 1000)
        self._operator = operator
        metrics = self._runtime_context.get_metrics_group()
        from pipelines.runtimes.flink.counters import OperatorCounters
        from pipelines.runtimes.flink.latency import LatencyWindow

        self._counters = OperatorCounters(metrics, operator)
        self._next_metrics_flush = time.monotonic() + METRICS_FLUSH_MS / 1000
        self._latency = LatencyWindow()
        self._latency.register(self._counters, metrics)
        model = getattr(operator, "model", None)
        if model is not None:  # the default model's version in use (changes on a hot-swap)
            self._counters.add_gauge(metrics.add_group("model", str(model.ref).partition("@")[0]), "model_version",
                                     self._model_version)
        from pipelines.runtimes.gc_tuning import tune_for_scoring

        tune_for_scoring()

    def _model_version(self) -> int:
        version = str(self._operator.model.ref).rpartition("@")[2]
        return int(version) if version.isdigit() else 0

    def _dead_letter(self, reason: str, *fields: Any) -> tuple[Any, Row]:
        """The dead-letter side output for one record, counted in `dead_letters{reason}`."""
        self._counters.count_dead_letter(reason)
        return DEAD_LETTERS, dead_letter_row(self.pipeline, reason, *fields)

    def _flush_metrics(self, now: float) -> None:
        self._next_metrics_flush = now + METRICS_FLUSH_MS / 1000
        self._counters.flush()

    def _schedule_metrics_flush(self, key: str, ctx: KeyedProcessFunction.Context) -> None:
        """A processing-time timer (on `key`) that flushes the counters if no element does within a second."""
        at = int(time.time() * 1000) + METRICS_FLUSH_MS
        ctx.timer_service().register_processing_time_timer(at)
        self._metrics_timer = (key, at)

    def _refresh_models(self) -> None:
        """Hot-swap: follow registry promotions between two events (sessions are created on a Python thread)."""
        self._next_refresh = time.monotonic() + self._refresh_s
        swaps: list[Any] = []
        _run_in_python_thread(lambda: swaps.extend(self._operator.refresh_models()))
        counts = report_swaps(self.pipeline, swaps)
        self._counters.swaps += counts.swapped
        self._counters.swap_failures += counts.failed

    def process_element(self, row: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Any]:
        """`row` is (value, topic, partition, offset, timestamp ms, key) of one Kafka record, keyed by the JVM on
        `key`; emit `(result key, result JSON)` rows, or one dead letter if the record is malformed or scoring
        fails."""
        if self._operator is None:
            self._open_operator()
        now = time.monotonic()
        if now >= self._next_metrics_flush:
            self._flush_metrics(now)
        if self._refresh_s > 0 and now >= self._next_refresh:
            self._refresh_models()
        value, topic, partition, offset, row_key = row[0], row[1], row[2], row[3], row[5]
        if self._metrics_timer is None:
            self._schedule_metrics_flush(row_key, ctx)
        raw = b"" if value is None else value if type(value) is bytes else bytes(value)
        event = self._decoder.decode(raw)
        if isinstance(event, self._rejection):
            yield self._dead_letter(event.reason, event.error, raw, topic, partition, offset)
            return
        key = self._key_of(event)
        if key != row_key:  # JSON_VALUE read another key than the decoder (e.g. a duplicated field)
            yield self._dead_letter(
                "invalid_value", f"ambiguous key: the record was keyed by {row_key!r} but decodes to {key!r}",
                raw, topic, partition, offset,
            )
            return
        state = self._state
        state.set_current_key(key)  # the element's Flink key: heads come from the state's cache
        try:
            outcome = self._apply(self._operator, event, state, self._coordinates(topic, partition, offset))
        finally:
            state.flush()  # the element's one head write, while Flink's current key is still the element's
        if self.changelog:  # what this element wrote, as the stored bytes: no state read
            yield from self._changelog_rows(key)
        if isinstance(outcome, self._failure):  # an operator or model error: one dead letter, the stream goes on
            yield self._dead_letter(outcome.reason, outcome.error, raw, topic, partition, offset)
            return
        results = outcome
        if results and row[4] >= 0:  # a sampled record (see keying.LATENCY_SAMPLE)
            self._latency.record(row[4])
        counters = self._counters
        counters.scored += len(results)
        for result in results:
            decision = getattr(result, "decision", None)
            if decision is not None:
                counters.count_decision(decision)
            yield Row(self._spec.result_key(result), self._spec.encode_result(result).decode())
        if self._clock is not None and results:
            self._schedule_sweep(self._clock, ctx)

    def _changelog_rows(self, key: str) -> Iterator[tuple[OutputTag, Row]]:
        """The state changelog rows of what the element changed: each version record it wrote, then each side
        entry it set (a reader meeting version 1 starts the key anew, so versions go first)."""
        written, sides = self._state.take_changes()
        for record in written:
            yield STATE_CHANGELOG, Row(key, self._version_value(record))
        for name, (side, inline) in sides.items():
            yield STATE_CHANGELOG, Row(key, self._side_value(name, side, inline=inline))

    def _schedule_sweep(self, clock: EventClock, ctx: KeyedProcessFunction.Context) -> None:
        """Advance the event clock; a key's first version (a new key, or an expired one restarted) gets the
        timer that will look at whether to sweep it (`pipelines.runtimes.expiry`)."""
        latest = self._state.last_written
        if latest is None:
            return
        now = int(time.time() * 1000)  # Flink's processing time is the wall clock in ms
        clock.saw(latest.event_time, now)
        if latest.version == 1:
            ctx.timer_service().register_processing_time_timer(clock.first_check_ms_for(latest.event_time, now))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Any]:
        """A key's sweep timer: remove its state if its subtask's event clock is two TTLs past its newest event
        (a tombstone goes to the state changelog), else look again when it will be. The metrics timer
        (`_schedule_metrics_flush`) flushes the counters."""
        if self._operator is None:
            self._open_operator()
        key = ctx.get_current_key()
        metrics_timer = self._metrics_timer is not None and self._metrics_timer == (key, timestamp)
        if metrics_timer:
            self._metrics_timer = None
            self._flush_metrics(time.monotonic())
        if self._clock is None:  # no TTL (or a timer of a job that ran with a TTL, restored without one)
            return
        state = self._state
        state.set_current_key(key)
        newest = state.newest_event_time()
        if newest is None:
            return
        if self._clock.due(newest):
            state.forget()
            state.flush()
            self._counters.swept += 1
            if self.changelog:
                yield STATE_CHANGELOG, Row(key, None)
        elif not metrics_timer:  # a metrics timer is no sweep check: the key has its own
            ctx.timer_service().register_processing_time_timer(self._clock.next_check_ms(newest, timestamp))

    def close(self) -> None:
        """Add the pending counts to Flink's counters and close the operator."""
        operator = getattr(self, "_operator", None)
        if operator is not None:
            self._counters.flush()
            operator.close()
