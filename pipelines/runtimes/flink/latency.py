"""Send→scored latency of a running job, as Prometheus gauges (p50, p99, max over the recent results).

The send time is the Kafka record's timestamp (the producer's CreateTime unless the topic sets LogAppendTime),
the scored time is when the operator emits the result, both in epoch milliseconds, so the figure includes
the time a record waited in Kafka and in Flink's network buffers (clocks of one machine, or NTP-synchronised).
The Flink job samples every 16th record (`keying.LATENCY_SAMPLE`: converting every record's timestamp in SQL
cost measurable throughput and latency).
`record` is O(1) per result (one slot of a fixed ring); the percentiles are computed at each metrics flush of
the keyed function (at most once a second, on the task thread: see `counters.PushedGauge`), over the results of
the last `window_s` seconds (at most `capacity` of them), so a job idle for a window reports 0 instead of an old
figure. Records replayed from the past have old timestamps: their latencies say how far
behind the job is, which is what a replay's lag is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.runtimes.flink.counters import OperatorCounters


class LatencyWindow:
    """The latencies (ms) of the most recent results, in a ring of `capacity` slots."""

    def __init__(self, capacity: int = 4096, window_s: float = 60.0) -> None:
        self._latency = [0] * capacity
        self._at = [0.0] * capacity
        self._next = 0
        self._capacity = capacity
        self._window_s = window_s

    def record(self, sent_ms: int | None, now_s: float | None = None) -> None:
        """Note one result of a record sent at `sent_ms` (epoch ms; None: unknown, not counted)."""
        if sent_ms is None:
            return
        now = time.time() if now_s is None else now_s
        slot = self._next % self._capacity
        self._latency[slot] = max(0, int(now * 1000) - sent_ms)
        self._at[slot] = now
        self._next += 1

    def _recent(self, now_s: float | None) -> list[int]:
        since = (time.time() if now_s is None else now_s) - self._window_s
        filled = min(self._next, self._capacity)
        return sorted(lat for lat, at in zip(self._latency[:filled], self._at[:filled], strict=True) if at >= since)

    def percentile(self, fraction: float, now_s: float | None = None) -> int:
        """The `fraction` quantile (nearest rank) of the recent latencies in ms; 0 when there were none."""
        recent = self._recent(now_s)
        if not recent:
            return 0
        rank = min(len(recent) - 1, max(0, int(fraction * len(recent) + 0.999999) - 1))
        return recent[rank]

    def register(self, counters: OperatorCounters, group: object) -> None:
        """Add the gauges `send_to_scored_ms_p50`, `_p99` and `_max` to a Flink metric group, set by `counters`
        at each of its flushes."""
        counters.add_gauge(group, "send_to_scored_ms_p50", lambda: self.percentile(0.50))
        counters.add_gauge(group, "send_to_scored_ms_p99", lambda: self.percentile(0.99))
        counters.add_gauge(group, "send_to_scored_ms_max", lambda: self.percentile(1.0))
