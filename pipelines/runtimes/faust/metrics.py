"""The faust worker's Prometheus metrics (`--metrics-port`): the Flink job's names, plus batches, commits and lag.

Every series is named `streamscore_<the Flink job's metric name>` and labelled `runtime="faust"` and
`pipeline`, so one dashboard query covers both runtimes (`scripts/deploy/grafana`):

- counters `events_scored`, `dead_letters{reason}`, `decisions{decision}`, `duplicate_events`, `model_swaps`,
  `model_swap_failures`,
  `expired_keys`, `swept_keys`, `batches` (scored), `commits` (transactions, or flushes at-least-once: batches
  scored while one commits share the next);
- gauges `model_version{model}`, `send_to_scored_ms_p50/_p99/_max` (Kafka record timestamp to the commit that
  made its result visible, every 16th record, over the last minute), `batch_size_p50/_max` (records per scored
  batch), `commit_ms_p50/_p99` (one commit: sends, and the transaction or the flush), `consumer_lag{partition}` (the
  partition's high watermark minus the offset committed for it);
- per remote model backend (labels `backend`, `model`), the `remote_*` counters and gauges of
  `pipelines.runtimes.remote_export` (requests, errors, timeouts, fallbacks, latency p50/p99, breaker open), read
  from the operator at each scrape.

Counts are taken when a batch's outputs are committed, so they are what readers of the output saw. The endpoint
is a small aiohttp server (aiohttp ships with faust) rendering the text exposition format on each scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pipelines.runtimes.remote_export import remote_samples

#: Every n-th input record's timestamp feeds the send→scored gauges (as the Flink job samples every 16th).
LATENCY_SAMPLE = 16


class RecentValues:
    """The values of the last `window_s` seconds (at most `capacity`), for quantile gauges."""

    def __init__(self, capacity: int = 4096, window_s: float = 60.0) -> None:
        self._values = [0.0] * capacity
        self._at = [0.0] * capacity
        self._next = 0
        self._capacity = capacity
        self._window_s = window_s

    def add(self, value: float, now_s: float | None = None) -> None:
        """Note one value."""
        slot = self._next % self._capacity
        self._values[slot] = value
        self._at[slot] = time.time() if now_s is None else now_s
        self._next += 1

    def quantile(self, fraction: float, now_s: float | None = None) -> float:
        """The `fraction` quantile (nearest rank) of the recent values; 0 when there were none."""
        since = (time.time() if now_s is None else now_s) - self._window_s
        filled = min(self._next, self._capacity)
        recent = sorted(v for v, at in zip(self._values[:filled], self._at[:filled], strict=True) if at >= since)
        if not recent:
            return 0.0
        return recent[min(len(recent) - 1, max(0, int(fraction * len(recent) + 0.999999) - 1))]


class WorkerMetrics:
    """What the worker counted so far; `render()` is the Prometheus text exposition of it."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.events_scored = 0
        self.duplicate_events = 0
        self.model_swaps = 0
        self.model_swap_failures = 0
        self.expired_keys = 0
        self.swept_keys = 0
        self.batches = 0
        self.commits = 0
        self.dead_letters: dict[str, int] = {}
        self.decisions: dict[str, int] = {}
        self.latency_ms = RecentValues()
        self.batch_size = RecentValues()
        self.commit_ms = RecentValues()
        #: The model version in use per model name (read at each scrape).
        self.model_versions: Callable[[], dict[str, int]] = dict
        #: The consumer lag per input partition (read at each scrape).
        self.lag: Callable[[], dict[int, int]] = dict
        #: The operator's `remote_metrics()` (read at each scrape).
        self.remote: Callable[[], dict[str, dict[str, Any]]] = dict

    def count(self, table: dict[str, int], label: str, n: int = 1) -> None:
        """Add `n` to the `label` entry of a labelled counter (`dead_letters`, `decisions`)."""
        table[label] = table.get(label, 0) + n

    def render(self) -> str:
        """The metrics in Prometheus' text format."""
        base = f'runtime="faust",pipeline="{_escape(self.pipeline)}"'
        lines: list[str] = []

        def family(name: str, kind: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# TYPE streamscore_{name} {kind}")
            for labels, value in samples:
                extra = f",{labels}" if labels else ""
                lines.append(f"streamscore_{name}{{{base}{extra}}} {_number(value)}")

        for name in ("events_scored", "duplicate_events", "model_swaps", "model_swap_failures", "expired_keys",
                     "swept_keys", "batches", "commits"):
            family(name, "counter", [("", getattr(self, name))])
        family("dead_letters", "counter", [(f'reason="{_escape(k)}"', v) for k, v in sorted(self.dead_letters.items())])
        family("decisions", "counter", [(f'decision="{_escape(k)}"', v) for k, v in sorted(self.decisions.items())])
        family("model_version", "gauge",
               [(f'model="{_escape(k)}"', v) for k, v in sorted(self.model_versions().items())])
        for suffix, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
            family(f"send_to_scored_ms_{suffix}", "gauge", [("", self.latency_ms.quantile(fraction))])
        family("batch_size_p50", "gauge", [("", self.batch_size.quantile(0.5))])
        family("batch_size_max", "gauge", [("", self.batch_size.quantile(1.0))])
        family("commit_ms_p50", "gauge", [("", self.commit_ms.quantile(0.5))])
        family("commit_ms_p99", "gauge", [("", self.commit_ms.quantile(0.99))])
        family("consumer_lag", "gauge", [(f'partition="{p}"', v) for p, v in sorted(self.lag().items())])
        remote: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for sample in remote_samples(self.remote()):
            labels = f'backend="{_escape(sample.backend)}",model="{_escape(sample.model)}"'
            remote.setdefault((sample.name, sample.kind), []).append((labels, sample.value))
        for (name, kind), samples in remote.items():
            family(name, kind, samples)
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


async def serve_metrics(metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Serve `metrics` at http://host:port/metrics until the returned runner is cleaned up."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
