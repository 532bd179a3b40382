"""The remote model backends' metrics as both runtimes export them (one naming for the faust worker and Flink).

`Operator.remote_metrics()` gives, per remote model (`backend/name@version`), the counters of
`operators.remote.backend.RemoteMetrics` plus the breaker's state. Each runtime exports them labelled
`backend` and `model` (`name@version`) under these names:

- counters `remote_requests`, `remote_successes`, `remote_errors`, `remote_timeouts`, `remote_rejected` (in-flight
  limit or open breaker), `remote_fallbacks` (rows scored by the route's model in-process instead),
  `remote_dead_letters` (rows sent to the dead letters with reason `model_unavailable`),
  `remote_breaker_openings`;
- gauges `remote_latency_us_p50`, `remote_latency_us_p99` (successful requests, the last 2,048; microseconds,
  integers, because PyFlink's thread-mode gauge is a `Gauge<Long>` whose reader casts to `Long`: a Python float
  makes every Prometheus scrape of the job fail) and `remote_breaker_open` (0 closed, 1 open or half-open: only a
  probe goes through).

The counts are taken when the operator scores a batch (the faust worker's own counters are taken at commit):
a batch scored and then rolled back by a crash counted its request and its fallbacks once more on the rerun.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: `remote_metrics()` counter field -> exported counter name.
REMOTE_COUNTERS = {
    "requests": "remote_requests",
    "successes": "remote_successes",
    "errors": "remote_errors",
    "timeouts": "remote_timeouts",
    "rejected": "remote_rejected",
    "fallback_rows": "remote_fallbacks",
    "dead_letter_rows": "remote_dead_letters",
    "breaker_opened": "remote_breaker_openings",
}
#: `remote_metrics()` gauge field (ms) -> exported gauge name (integer µs).
REMOTE_GAUGES = {"latency_p50_ms": "remote_latency_us_p50", "latency_p99_ms": "remote_latency_us_p99"}
BREAKER_GAUGE = "remote_breaker_open"


@dataclass(frozen=True, slots=True)
class RemoteSample:
    """One exported value: metric `name`, `kind` (`counter` or `gauge`), the remote model's `backend` and
    `model` (`name@version`), and the value."""

    name: str
    kind: str
    backend: str
    model: str
    value: float


def split_key(key: str) -> tuple[str, str]:
    """`server/risk-large@1` -> (`server`, `risk-large@1`)."""
    backend, _, model = key.partition("/")
    return backend, model


def latency_us(milliseconds: Any) -> int:
    """A latency gauge's value: milliseconds as integer microseconds."""
    return round(float(milliseconds) * 1000)


def breaker_open(state: str) -> int:
    """The `remote_breaker_open` gauge's value for a breaker state (`closed` 0, `open`/`half_open` 1)."""
    return 0 if state == "closed" else 1


def remote_samples(metrics: Mapping[str, Mapping[str, Any]]) -> list[RemoteSample]:
    """Every exported sample of `Operator.remote_metrics()` (empty without remote routes), sorted by model."""
    samples = []
    for key, values in sorted(metrics.items()):
        backend, model = split_key(key)
        for field, name in REMOTE_COUNTERS.items():
            samples.append(RemoteSample(name, "counter", backend, model, float(values.get(field, 0))))
        for field, name in REMOTE_GAUGES.items():
            samples.append(RemoteSample(name, "gauge", backend, model, latency_us(values.get(field, 0.0))))
        samples.append(RemoteSample(BREAKER_GAUGE, "gauge", backend, model,
                                    float(breaker_open(str(values.get("breaker", "closed"))))))
    return samples
