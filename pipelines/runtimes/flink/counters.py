"""The keyed function's metric counters, counted in Python and added to Flink's counters in one go.

Every `Counter.inc` of PyFlink's thread mode is a call into the JVM; counting per event in Python ints and
flushing the sums (at most once a second, see `pipelines.runtimes.flink.functions`) turns a few JVM calls per
event into a few per second. The metric names and groups are those the job always exported: `events_scored`,
`decisions{decision}`, `dead_letters{reason}`, `duplicate_events`, `expired_keys`, `swept_keys`, `model_swaps`,
`model_swap_failures`; the remote backends' `remote_*` counters and gauges (`pipelines.runtimes.remote_export`), in
the groups `backend` and `model` (Prometheus labels `backend="server"`, `model="risk-large@1"`).

**No Python gauges.** A PyFlink thread-mode gauge (`MetricGroup.gauge(name, callable)`) is a Java `MetricGauge`
that calls the Python callable through pemja on whichever thread reads it: the Prometheus reporter's HTTP
thread, while the task thread runs the job's Python. Scraped once a second under load, that crashed the
TaskManager JVM with a SIGSEGV in `_PyEval_EvalFrameDefault` (thread `prometheus-http-1-4`, Java frames
`pemja.core.object.PyObject.invokeMethod` <- `org.apache.flink.python.metric.embedded.MetricGauge.getValue`)
within a minute of a 2026-12-07 overload run. Every gauge is therefore a `PushedGauge`: a Flink counter that
Python sets from the task thread at each flush (at most once a second), which Flink's Prometheus reporter
exports under the same name (it exports counters as Prometheus gauges), and which the reporter reads without
calling into Python.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pipelines.runtimes import remote_export as rx


class PushedGauge:
    """A gauge whose value Python pushes from the task thread: a Flink counter moved by the difference
    (`set`), so the metric reporter reads a Java value and never calls into Python."""

    __slots__ = ("_counter", "value")

    def __init__(self, group: Any, name: str) -> None:
        self._counter = group.counter(name)
        self.value = 0

    def set(self, value: int) -> None:
        """Make the exported value `value` (one JVM call when it changed, none otherwise)."""
        value = int(value)
        if value != self.value:
            self._counter.inc(value - self.value)
            self.value = value


class OperatorCounters:
    """Counts of one keyed function, pending until `flush` adds them to the Flink metric group's counters.

    `operator` is read at each flush for its own running totals (`duplicates`, `expired_keys`).
    """

    def __init__(self, group: Any, operator: Any) -> None:
        self._group = group
        self._operator = operator
        self._scored_counter = group.counter("events_scored")
        self._duplicates_counter = group.counter("duplicate_events")
        self._expired_counter = group.counter("expired_keys")
        self._swept_counter = group.counter("swept_keys")
        self._swaps_counter = group.counter("model_swaps")
        self._swap_failures_counter = group.counter("model_swap_failures")
        self._decision_counters: dict[str, Any] = {}
        self._dead_letter_counters: dict[str, Any] = {}
        self._duplicates_seen = 0
        self._expired_seen = 0
        #: Pending counts (added to Flink's counters by `flush`).
        self.scored = 0
        self.swept = 0
        self.swaps = 0
        self.swap_failures = 0
        self.decisions: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}
        #: Per remote model (`backend/name@version`): its Flink counters, and the snapshot last flushed.
        self._remote_counters: dict[str, dict[str, Any]] = {}
        self._remote_seen: dict[str, dict[str, Any]] = {}
        #: Gauges set at each flush from what their reader returns then.
        self._gauges: list[tuple[PushedGauge, Callable[[], int]]] = []

    def add_gauge(self, group: Any, name: str, read: Callable[[], int]) -> PushedGauge:
        """A gauge `name` in `group`, set to `read()` at each `flush` (on the task thread) and now."""
        gauge = PushedGauge(group, name)
        gauge.set(read())
        self._gauges.append((gauge, read))
        return gauge

    def count_decision(self, decision: str) -> None:
        """One scored result with `decision`."""
        self.decisions[decision] = self.decisions.get(decision, 0) + 1

    def count_dead_letter(self, reason: str) -> None:
        """One dead letter for `reason`."""
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    def flush(self) -> None:
        """Add every pending count to Flink's counters and set the gauges (one JVM call per metric that
        changed)."""
        if self.scored:
            self._scored_counter.inc(self.scored)
            self.scored = 0
        if self.swept:
            self._swept_counter.inc(self.swept)
            self.swept = 0
        if self.swaps:
            self._swaps_counter.inc(self.swaps)
            self.swaps = 0
        if self.swap_failures:
            self._swap_failures_counter.inc(self.swap_failures)
            self.swap_failures = 0
        duplicates = self._operator.duplicates
        if duplicates != self._duplicates_seen:
            self._duplicates_counter.inc(duplicates - self._duplicates_seen)
            self._duplicates_seen = duplicates
        expired = getattr(self._operator, "expired_keys", 0)
        if expired != self._expired_seen:
            self._expired_counter.inc(expired - self._expired_seen)
            self._expired_seen = expired
        for decision, count in self.decisions.items():
            counter = self._decision_counters.get(decision)
            if counter is None:
                counter = self._decision_counters[decision] = self._group.add_group("decision", decision).counter(
                    "decisions")
            counter.inc(count)
        self.decisions.clear()
        for reason, count in self.dead_letters.items():
            counter = self._dead_letter_counters.get(reason)
            if counter is None:
                counter = self._dead_letter_counters[reason] = self._group.add_group("reason", reason).counter(
                    "dead_letters")
            counter.inc(count)
        self.dead_letters.clear()
        self._flush_remote()
        for gauge, read in self._gauges:
            gauge.set(read())

    def _flush_remote(self) -> None:
        """Add what each remote model counted since the last flush; its gauges read the latest snapshot (set
        with the other gauges, after this)."""
        for key, snapshot in self._operator.remote_metrics().items():
            seen = self._remote_seen.get(key, {})
            counters = self._remote_counters.get(key)
            if counters is None:
                self._remote_seen[key] = dict(snapshot)
                counters = self._remote_counters[key] = self._register_remote(key)
            for field in rx.REMOTE_COUNTERS:
                delta = int(snapshot.get(field, 0)) - int(seen.get(field, 0))
                if delta:
                    counters[field].inc(delta)
            self._remote_seen[key] = dict(snapshot)

    def _register_remote(self, key: str) -> dict[str, Any]:
        backend, model = rx.split_key(key)
        group = self._group.add_group("backend", backend).add_group("model", model)
        for field, name in rx.REMOTE_GAUGES.items():
            self.add_gauge(group, name, functools.partial(self._remote_latency_us, key, field))
        self.add_gauge(group, rx.BREAKER_GAUGE, functools.partial(self._remote_breaker_open, key))
        return {field: group.counter(name) for field, name in rx.REMOTE_COUNTERS.items()}

    def _remote_latency_us(self, key: str, field: str) -> int:
        return rx.latency_us(self._remote_seen.get(key, {}).get(field, 0.0))

    def _remote_breaker_open(self, key: str) -> int:
        return rx.breaker_open(str(self._remote_seen.get(key, {}).get("breaker", "closed")))
