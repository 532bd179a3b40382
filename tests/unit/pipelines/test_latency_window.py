"""The send→scored latency gauges' window: nearest-rank percentiles over the recent results only, bounded memory."""

from __future__ import annotations

from pipelines.runtimes.flink.latency import LatencyWindow


def test_percentiles_are_nearest_rank_over_the_recorded_latencies() -> None:
    window = LatencyWindow(capacity=1000, window_s=60)
    now = 1_000_000.0
    for latency in range(1, 101):  # 1..100 ms
        window.record(int(now * 1000) - latency, now_s=now)
    assert window.percentile(0.50, now_s=now) == 50
    assert window.percentile(0.99, now_s=now) == 99
    assert window.percentile(1.0, now_s=now) == 100


def test_only_the_last_window_counts_and_an_idle_job_reports_zero() -> None:
    window = LatencyWindow(capacity=100, window_s=10)
    window.record(int(100.0 * 1000) - 900, now_s=100.0)
    window.record(int(105.0 * 1000) - 20, now_s=105.0)
    assert window.percentile(1.0, now_s=108.0) == 900
    assert window.percentile(1.0, now_s=112.0) == 20  # the 900 ms result is older than 10 s
    assert window.percentile(0.5, now_s=200.0) == 0


def test_the_ring_keeps_the_newest_capacity_results_and_ignores_unknown_send_times() -> None:
    window = LatencyWindow(capacity=4, window_s=60)
    for latency in (500, 400, 3, 2, 1, 4):
        window.record(10_000_000 - latency, now_s=10_000.0)
    window.record(None, now_s=10_000.0)
    assert window.percentile(1.0, now_s=10_000.0) == 4  # 500 and 400 were overwritten
    assert window.percentile(0.25, now_s=10_000.0) == 1


def test_a_timestamp_from_the_future_counts_as_zero_not_negative() -> None:
    window = LatencyWindow()
    window.record(10_005_000, now_s=10_000.0)
    assert window.percentile(1.0, now_s=10_000.0) == 0
