"""Progress lines of long commands: done/total, rate and ETA; throttled; unknown totals without an ETA."""

from __future__ import annotations

import io
import threading
import time

from pipelines.cli.progress import Progress, follow


def test_the_line_has_the_count_share_rate_and_eta() -> None:
    progress = Progress("publishing to t", 1_000, "records")
    start = progress._start
    assert progress.line(250, now=start + 5.0) == "publishing to t: 250/1,000 records (25 %), 50 records/s, ETA 15 s"
    assert progress.line(1_000, now=start + 10.0) == "publishing to t: 1,000/1,000 records (100 %), 100 records/s"
    assert Progress("risk", None).line(30, now=Progress("x", None)._start + 3.0).startswith("risk: 30 events, ")


def test_updates_are_throttled_and_followed_from_a_thread() -> None:
    out = io.StringIO()
    progress = Progress("risk (bounded)", 10, "records", every_s=0.05, stream=out)
    for done in range(5):
        progress.update(done)  # within the first interval: nothing printed
    assert out.getvalue() == ""
    stop = threading.Event()
    counter = iter(range(1, 1_000))
    thread = follow(progress, lambda: next(counter), stop)
    time.sleep(0.3)
    stop.set()
    thread.join(1)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 7 and all(line.startswith("risk (bounded): ") for line in lines)
