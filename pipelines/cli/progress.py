"""Progress of long commands on stderr: done/total, rate and ETA, at most every `every_s` seconds.

`publish` reports records sent; a bounded `run`/`replay` (and so `backtest` and `demo`, which run one) reports
the input offsets its consumer group has committed against the end offsets it stops at. Lines go to stderr, so
stdout stays the command's result (a savepoint path, JSON); a command that ends within `every_s` prints none.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Reports `done` of `total` (None: unknown, no ETA) `unit`s for `what`; `clock` gives monotonic seconds."""

    def __init__(self, what: str, total: int | None, unit: str = "events", *, every_s: float = 5.0,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.stream = stream or sys.stderr
        self.clock = clock
        self._start = clock()
        self._next = self._start + every_s

    def line(self, done: int, now: float | None = None) -> str:
        """The progress line for `done` units at `now` (monotonic seconds)."""
        elapsed = max((now if now is not None else self.clock()) - self._start, 1e-9)
        rate = done / elapsed
        text = f"{self.what}: {done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * done / self.total:.0f} %)"
            if rate > 0 and done < self.total:
                text += f", {rate:,.0f} {self.unit}/s, ETA {(self.total - done) / rate:,.0f} s"
            else:
                text += f", {rate:,.0f} {self.unit}/s"
        else:
            text += f" {self.unit}, {rate:,.0f} {self.unit}/s"
        return text

    def update(self, done: int) -> None:
        """Print the line if `every_s` passed since the last one."""
        now = self.clock()
        if now >= self._next:
            self._next = now + self.every_s
            print(self.line(done, now), file=self.stream, flush=True)


def follow(
    progress: Progress, done: Callable[[], int], stop: threading.Event,
    wait: Callable[[float], bool] | None = None,
) -> threading.Thread:
    """A daemon thread calling `progress.update(done())` every `progress.every_s` until `stop` is set (errors
    while asking, e.g. a broker briefly away, skip one report). `wait(seconds)` sleeps until `stop` is set or
    the time passed and says whether it was set (default `stop.wait`)."""
    pause = wait or stop.wait

    def loop() -> None:
        while not pause(progress.every_s):
            try:
                progress.update(done())
            except Exception:  # best effort: the command itself reports real failures
                continue

    thread = threading.Thread(target=loop, name="progress", daemon=True)
    thread.start()
    return thread
