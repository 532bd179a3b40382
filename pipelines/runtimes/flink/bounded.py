"""Finishing bounded runs that were restored from a checkpoint.

flink-connector-kafka 5.0.0 has an open bug (FLINK-31006, apache/flink-connector-kafka#318): a bounded
Kafka source restored from a checkpoint or savepoint reads up to its stopping offsets and then waits forever
for a "no more splits" signal that never comes, so the job never finishes. A bounded run records the end
offsets it stops at in its own job folder (`<checkpoint-dir>/<job-id>/`, next to its `chk-N` folders; a fresh
run takes the input's end offsets when it starts, a restored run inherits those of the job it restores, found
from the checkpoint's job folder or a savepoint's job-id prefix). A restored bounded run is ended by streamscore
once the job's consumer group has committed those offsets (Flink commits them when a checkpoint completes,
the same moment the transactional sinks commit), after one more checkpoint interval so the last results are
committed.
The job is cancelled, which keeps its checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.kafka.clients import committed_offsets
from pipelines.runtimes.flink.checkpoints import list_checkpoints
from pipelines.runtimes.flink.options import JobOptions

END_OFFSETS_FILE = "bounded-end-offsets.json"


def record_end_offsets(checkpoint_dir: Path, job_id: str, ends: dict[int, int]) -> Path:
    """Save the end offsets of bounded job `job_id` in its checkpoint folder; returns the file."""
    folder = checkpoint_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / END_OFFSETS_FILE
    path.write_text(json.dumps({str(p): o for p, o in ends.items()}))
    return path


def saved_end_offsets(restore: Path, checkpoint_dir: Path) -> dict[int, int] | None:
    """The end offsets recorded by the job that wrote the checkpoint or savepoint `restore`, if any.

    `<dir>/<job-id>/chk-N` -> `<dir>/<job-id>/`; `savepoint-<job-id prefix>-<random>` -> the job folder under
    `checkpoint_dir` whose id starts with that prefix (only when exactly one does). None when nothing matches
    (e.g. an unbounded job's checkpoint): the caller then stops at the input's current end.
    """
    candidates: list[Path] = []
    if restore.name.startswith("chk-"):
        candidates = [restore.parent / END_OFFSETS_FILE]
    elif restore.name.startswith("savepoint-"):
        prefix = restore.name.removeprefix("savepoint-").split("-")[0]
        if prefix:
            candidates = sorted(checkpoint_dir.glob(f"{prefix}*/{END_OFFSETS_FILE}"))
    if len(candidates) != 1 or not candidates[0].is_file():
        return None
    return {int(p): int(o) for p, o in json.loads(candidates[0].read_text()).items()}


def reached(options: JobOptions, ends: dict[int, int]) -> Callable[[], bool]:
    """A `done` callback: true once the job's group committed `ends`, and then two checkpoint intervals passed
    and two more checkpoints completed (the sinks commit the transactions of a checkpoint when it completes, as
    the source commits its offsets: on a loaded machine two intervals alone ended a replay before its last
    results were committed).

    A checkpoint whose splits had all finished restores readers with nothing to read and nothing to commit;
    when the group has committed nothing at all after `idle_s` and two checkpoints of this run completed (a
    source with input commits its offsets when the first one does), the restored job had no input left.
    Counting checkpoints, not only seconds, keeps a slow start (JVM, restore) from ending the job early.
    """
    started = time.monotonic()
    started_wall = time.time()
    idle_s = max(30.0, 10 * options.checkpoint_interval_ms / 1000)
    since: list[float] = []

    def checkpoints_since(wall: float) -> int:
        return sum(1 for c in list_checkpoints(options.checkpoint_dir) if c.completed_at.timestamp() >= wall)

    def checkpoints_since_start() -> int:
        return checkpoints_since(started_wall)

    def done() -> bool:
        if since:
            return (
                time.monotonic() - since[0] >= 2 * options.checkpoint_interval_ms / 1000
                and checkpoints_since(since[1]) >= 2
            )
        committed = committed_offsets(options.bootstrap, options.id_prefix, options.input_topic, ends)
        if all(end == 0 or committed.get(p, -1) >= end for p, end in ends.items()):
            since.extend((time.monotonic(), time.time()))
        elif (
            all(offset < 0 for offset in committed.values())
            and time.monotonic() - started > idle_s
            and checkpoints_since_start() >= 2
        ):
            return True
        return False

    return done
