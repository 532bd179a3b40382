"""Sweeping expired keys: removing the state of keys that stopped receiving events (the `state.ttl_hours`
bound), so the stores hold the keys active within about twice the TTL of event time, not every key ever seen.

Expiry itself is lazy and exact (`operators.core.OperatorBase.is_expired`): the next event of a key idle for
more than the TTL of event time forgets its state and starts it as a new key (version 1). A sweep removes the
same state earlier, without waiting for that event, so a swept key that returns gets exactly the result an
unswept one would. A key is swept once the newest event time its partition/subtask has seen (`EventClock`)
is more than `SWEEP_AFTER_TTLS` TTLs past the key's newest event: the first TTL makes it expired, the second
is a grace for late events. The one case where a sweep changes a result: an event of the key within one TTL
of the key's newest event (so the key is not expired for it) that arrives more than one TTL behind the
newest event of its subtask; it finds the key swept and starts it as new. Choose the TTL longer than any
lateness of the input.

The Flink job sweeps with one processing-time timer per key lifetime, registered when version 1 is written for
when the key would be due at the event clock's current pace (`EventClock.first_check_ms_for`; during the first
second after a start, when the pace is not measured yet, `state.sweep_check_seconds` later) and rescheduled the
same way while the key stays active, so an idle key costs one or two timer firings and its other events
nothing. The
faust runtime sweeps incrementally: each micro-batch examines as many stored keys of its partition as it
scored events, resuming where the previous one stopped (`RocksVersionedStore.scan_heads`).
"""

from __future__ import annotations

#: A key is swept this many TTLs of event time after its newest event (one to expire, one of grace).
SWEEP_AFTER_TTLS = 2
#: How often the event clock's pace is re-measured (processing time).
PACE_WINDOW_MS = 300_000
#: The shortest window the pace is measured over.
MIN_PACE_SPAN_MS = 1_000


class EventClock:
    """The newest event time one subtask (or partition) has seen, and how fast it advances per millisecond of
    processing time (above 1 while a backlog or a replay is processed)."""

    def __init__(self, ttl_ms: int, first_check_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.first_check_ms = first_check_ms
        self.newest: int | None = None
        self._anchor: tuple[int, int] | None = None  # (processing ms, event ms) where the pace window starts
        self._pace = 1.0
        self._measured = False  # a pace has been measured over at least MIN_PACE_SPAN_MS

    def saw(self, event_time: int, now_ms: int) -> None:
        """Advance the clock by an event's time (a late event does not move it back)."""
        if self.newest is None or event_time > self.newest:
            self.newest = event_time
        if self._anchor is None:
            self._anchor = (now_ms, self.newest)
        elif now_ms - self._anchor[0] >= PACE_WINDOW_MS:
            self._pace = self.pace(now_ms)
            self._anchor = (now_ms, self.newest)
        self._measured = self._measured or now_ms - self._anchor[0] >= MIN_PACE_SPAN_MS

    def pace(self, now_ms: int) -> float:
        """Event milliseconds per processing millisecond, at least 1 (the last full window's while the current
        one is shorter than `MIN_PACE_SPAN_MS`)."""
        if self._anchor is None or self.newest is None:
            return 1.0
        span = now_ms - self._anchor[0]
        if span < MIN_PACE_SPAN_MS:
            return self._pace
        return max(1.0, (self.newest - self._anchor[1]) / span)

    def due(self, newest_event_time: int) -> bool:
        """Whether a key whose newest event is `newest_event_time` is to be swept now."""
        return self.newest is not None and self.newest - newest_event_time > SWEEP_AFTER_TTLS * self.ttl_ms

    def first_check_ms_for(self, newest_event_time: int, now_ms: int) -> int:
        """When (processing time) to first look at a new key: `first_check_ms` from now while the pace is not
        measured yet (the first second after a start), else when it will be due (`next_check_ms`)."""
        if not self._measured:
            return now_ms + self.first_check_ms
        return self.next_check_ms(newest_event_time, now_ms)

    def next_check_ms(self, newest_event_time: int, now_ms: int) -> int:
        """When (processing time) to look at a key that is not due yet: when the clock, at its current pace,
        will have made it due (at least `first_check_ms` from now)."""
        if self.newest is None:  # no event since a restore: the pace is unknown, wait the TTL in processing time
            return now_ms + max(self.first_check_ms, self.ttl_ms)
        remaining = newest_event_time + SWEEP_AFTER_TTLS * self.ttl_ms - self.newest
        return now_ms + max(self.first_check_ms, int(remaining / self.pace(now_ms)) + 1)
