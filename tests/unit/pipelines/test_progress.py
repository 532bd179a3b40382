"""Progress lines of long commands: done/total, rate and ETA; throttled; unknown totals without an ETA."""

from __future__ import annotations

import io
import threading

from pipelines.cli.progress import Progress, follow


def test_the_line_has_the_count_share_rate_and_eta() -> None:
    progress = Progress("publishing to t", 1_000, "records")
    start = progress._start
    assert progress.line(250, now=start + 5.0) == "publishing to t: 250/1,000 records (25 %), 50 records/s, ETA 15 s"
    assert progress.line(1_000, now=start + 10.0) == "publishing to t: 1,000/1,000 records (100 %), 100 records/s"
    assert Progress("risk", None).line(30, now=Progress("x", None)._start + 3.0).startswith("risk: 30 events, ")


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_updates_are_throttled_to_one_line_per_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = Progress("risk (bounded)", 10, "records", every_s=5.0, stream=out, clock=clock)
    for done in range(4):
        clock.now += 1.0
        progress.update(done)  # 4 s: still within the first interval, nothing printed
    assert out.getvalue() == ""
    clock.now += 1.0
    progress.update(5)
    progress.update(6)  # the same instant: throttled
    assert out.getvalue().splitlines() == ["risk (bounded): 5/10 records (50 %), 1 records/s, ETA 5 s"]
    clock.now += 4.0
    progress.update(7)
    clock.now += 1.0
    progress.update(9)
    assert out.getvalue().splitlines()[1:] == ["risk (bounded): 9/10 records (90 %), 1 records/s, ETA 1 s"]


def test_follow_reports_from_its_thread_until_stopped() -> None:
    """`follow` asks `done` once per interval (an injected wait: no wall-clock sleeps), skips a failed ask, and
    ends when the stop event is set."""
    out, clock = io.StringIO(), _Clock()
    progress = Progress("risk (bounded)", 100, "records", every_s=5.0, stream=out, clock=clock)
    stop = threading.Event()
    intervals = iter(range(6))

    def wait(seconds: float) -> bool:
        clock.now += seconds
        if next(intervals, None) is None:
            stop.set()
        return stop.is_set()

    asked = iter([10, 20, RuntimeError("broker away"), 40, 50])

    def done() -> int:
        value = next(asked)
        if isinstance(value, Exception):
            raise value
        return value

    thread = follow(progress, done, stop, wait=wait)
    thread.join(5)
    assert not thread.is_alive()
    counts = [line.split(": ")[1].split("/")[0] for line in out.getvalue().splitlines()]
    assert counts == ["10", "20", "40", "50"]
