"""The Flink keyed functions' metrics: counts flushed in one go, and gauges pushed from the task thread.

A PyFlink thread-mode gauge calls its Python callable on the thread that reads it (the Prometheus reporter's
HTTP thread), which crashed the TaskManager JVM while the task thread ran Python: the functions register no
Python gauge, only counters, and a gauge's exported value is what the last flush set."""

from __future__ import annotations

import time
from typing import Any

from pipelines.runtimes.flink.counters import OperatorCounters, PushedGauge
from pipelines.runtimes.flink.latency import LatencyWindow


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.calls = 0

    def inc(self, n: int = 1) -> None:
        self.count += n
        self.calls += 1


class _Group:
    """A stand-in for PyFlink's metric group: counters by name; a Python gauge is an error here."""

    def __init__(self, path: tuple[str, ...] = ()) -> None:
        self.path = path
        self.counters: dict[tuple[str, ...], _Counter] = {}
        self.root = self

    def counter(self, name: str) -> _Counter:
        return self.root.counters.setdefault((*self.path, name), _Counter())

    def add_group(self, key: str, value: str) -> _Group:
        child = _Group((*self.path, key, value))
        child.root = self.root
        return child

    def gauge(self, name: str, obj: Any) -> None:
        raise AssertionError(f"a Python gauge {name!r}: the reporter's thread would call into Python")


class _Operator:
    def __init__(self) -> None:
        self.duplicates = 0
        self.expired_keys = 0
        self.remote: dict[str, dict[str, Any]] = {}

    def remote_metrics(self) -> dict[str, dict[str, Any]]:
        return self.remote


def test_a_pushed_gauge_moves_its_counter_to_the_value_set() -> None:
    group = _Group()
    gauge = PushedGauge(group, "model_version")
    gauge.set(3)
    gauge.set(3)
    gauge.set(1)
    counter = group.counters[("model_version",)]
    assert counter.count == 1 and counter.calls == 2  # unchanged values cost no JVM call


def test_latency_model_and_remote_gauges_are_pushed_at_each_flush_never_registered_as_python_gauges() -> None:
    group, operator = _Group(), _Operator()
    counters = OperatorCounters(group, operator)
    window = LatencyWindow(capacity=100, window_s=3_600)
    window.register(counters, group)
    version = [2]
    counters.add_gauge(group.add_group("model", "risk"), "model_version", lambda: version[0])
    assert group.counters[("model", "risk", "model_version")].count == 2  # set when added
    for latency in (10, 20, 30):
        window.record(int(time.time() * 1000) - latency)
    operator.remote = {"server/risk-large@1": {"requests": 4, "latency_p50_ms": 1.5, "breaker": "open"}}
    version[0] = 3
    counters.scored = 3
    counters.flush()
    values = {path: c.count for path, c in group.counters.items()}
    assert values[("events_scored",)] == 3 and values[("model", "risk", "model_version")] == 3
    assert 10 <= values[("send_to_scored_ms_p50",)] <= values[("send_to_scored_ms_max",)] <= 1_000
    remote = {path[-1]: v for path, v in values.items() if path[:2] == ("backend", "server")}
    assert remote["remote_breaker_open"] == 1 and remote["remote_requests"] == 4
    assert remote["remote_latency_us_p50"] == 1_500
    operator.remote = {"server/risk-large@1": {"requests": 6, "latency_p50_ms": 0.5, "breaker": "closed"}}
    counters.flush()
    values = {path: c.count for path, c in group.counters.items()}
    remote = {path[-1]: v for path, v in values.items() if path[:2] == ("backend", "server")}
    assert remote["remote_breaker_open"] == 0 and remote["remote_requests"] == 6
    assert remote["remote_latency_us_p50"] == 500
