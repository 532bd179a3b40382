"""Where a faust replay starts: a fresh consumer group whose offsets are committed before its first worker runs.

The faust runtime keeps no checkpoints (its state is the changelog plus the committed offsets), so a replay is a
new deployment - fresh state, its own group and transactional ids - over the input from chosen offsets or from a
point in time: those are committed for the new group, and its workers start there like after any restart.
"""

from __future__ import annotations

from pipelines.exceptions import ConfigError, UsageError
from pipelines.kafka.clients import commit_group_offsets, end_offsets
from pipelines.kafka.topic_reader import offsets_for_time


def parse_offsets(spec: str) -> dict[int, int]:
    """`partition:0,offset:42;partition:1,offset:7` (Flink's specific-offsets syntax) as {partition: offset}."""
    offsets: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        fields = dict(item.split(":", 1) for item in part.split(",") if ":" in item)
        try:
            partition, offset = int(fields["partition"]), int(fields["offset"])
        except (KeyError, ValueError):
            raise UsageError(
                f"--from-offsets must look like partition:0,offset:42;partition:1,offset:7, got {spec!r}"
            ) from None
        if partition < 0 or offset < 0:
            raise UsageError(f"--from-offsets needs partitions and offsets >= 0, got {part!r}")
        offsets[partition] = offset
    if not offsets:
        raise UsageError(f"--from-offsets names no partition: {spec!r}")
    return offsets


def start_group(
    bootstrap: str, group: str, topic: str, *, offsets: dict[int, int] | None = None, timestamp_ms: int | None = None
) -> dict[int, int]:
    """Commit the replay's start positions for `group` (partitions not named start at the beginning)."""
    ends = end_offsets(bootstrap, topic)
    if timestamp_ms is not None:
        starts = offsets_for_time(bootstrap, topic, timestamp_ms)
    else:
        starts = {p: 0 for p in ends} | (offsets or {})
    unknown = sorted(set(starts) - set(ends))
    if unknown:
        raise ConfigError(f"{topic!r} has partitions {sorted(ends)}; --from-offsets names {unknown}")
    commit_group_offsets(bootstrap, group, topic, starts)
    return starts
