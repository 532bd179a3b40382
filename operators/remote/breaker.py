"""`CircuitBreaker`: stop calling a failing backend, probe it again after a pause.

closed --(failures consecutive failures)--> open --(reset_seconds later: one probe allowed)--> half_open;
half_open --probe succeeds--> closed, --probe fails--> open again. Thread-safe; the clock is injectable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a breaker is: `closed` (calls go through), `open` (calls refused), `half_open` (one probe)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failures` consecutive failures; after `reset_seconds` lets one probe through (half-open)."""

    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_seconds < 0:
            raise ValueError(f"breaker: failures >= 1 and reset_seconds >= 0, got {failures}, {reset_seconds}")
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False
        #: How many times the breaker opened (a metric).
        self.opened = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker past its pause reads as half-open)."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
                return BreakerState.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, True once (the probe) until it is recorded."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.reset_seconds:
                    return False
                self._state = BreakerState.HALF_OPEN
                self._probing = False
            if self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        """A call succeeded: the breaker closes."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._consecutive = 0
            self._probing = False

    def record_failure(self) -> None:
        """A call failed: counts towards opening; a failed probe opens the breaker again."""
        with self._lock:
            self._consecutive += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._consecutive >= self.failures
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._probing = False
                self.opened += 1
