"""`tune_for_scoring`: the start-up heap frozen and the young threshold raised, once per process; the
`STREAMSCORE_GC=default` escape hatch. Each case runs in its own interpreter (the collector is process state)."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.runtimes.gc_tuning import YOUNG_THRESHOLD

_PROBE = """
import gc
from pipelines.runtimes.gc_tuning import tune_for_scoring
before = gc.get_threshold()
first, second = tune_for_scoring(), tune_for_scoring()
print(first, second, before[0], gc.get_threshold()[0], gc.get_freeze_count() > 0)
"""


def _probe(**env: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_freezes_the_start_up_heap_and_raises_the_young_threshold_once() -> None:
    first, second, before, after, frozen = _probe(STREAMSCORE_GC="")
    assert (first, second) == ("True", "False")
    assert int(before) < YOUNG_THRESHOLD == int(after)
    assert frozen == "True"


def test_default_leaves_the_collector_alone() -> None:
    first, _, before, after, frozen = _probe(STREAMSCORE_GC="default")
    assert first == "False" and before == after and frozen == "False"
