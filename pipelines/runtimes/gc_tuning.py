"""Python's cyclic garbage collector set up for a scoring loop: once, after the operator has opened.

A scoring loop allocates many short-lived objects per event (decoded events, state values, results), so with
CPython's default thresholds (a young collection every 700 net allocations) the collector runs every few dozen
events, and every so often it walks the whole heap: the imported modules, the model, the runtime's client
objects. Measured on the offline risk chain (`benchmarks/operator_bench.py --batch 500`, 20k events, 2026-12-06):
~22.5 µs/event with the defaults, ~19 µs with the collector disabled and ~19 µs with the young threshold at
10,000; the embedded interpreter of the Flink job and the faust worker carry much larger heaps than that
benchmark, so a full collection costs them more.

`tune_for_scoring()` therefore (1) collects once and freezes what exists (`gc.freeze()`: everything loaded at
start-up moves to a permanent generation that no later collection walks, as large Python services do), and (2)
raises the young threshold, so collections stay rare but still happen (state values hold no cycles; anything
else that does is still reclaimed). `STREAMSCORE_GC=default` leaves the collector as Python sets it.
"""

from __future__ import annotations

import gc
import os

#: The young-generation threshold (allocations minus deallocations) between collections while scoring.
YOUNG_THRESHOLD = 10_000

_tuned = False


def tune_for_scoring() -> bool:
    """Freeze the start-up heap and raise the collector's young threshold (once per process); returns whether it
    did (False when `STREAMSCORE_GC=default` or already done)."""
    global _tuned
    if _tuned or os.environ.get("STREAMSCORE_GC", "").lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    _tuned = True
    return True
