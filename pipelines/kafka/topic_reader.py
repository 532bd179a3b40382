"""Reading topics from outside a job (backtests, datasets, the closed loop, drift, replays): a topic's
partitions, the offsets for a point in time, and bounded partition reads (read_committed).

Reads stop at each partition's end as it is when the read starts (read_committed: the last stable offset), so a
report is computed over a fixed snapshot of the topics even while a production job keeps writing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import NamedTuple

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pipelines.exceptions import SetupError
from pipelines.kafka.clients import client_config


def _consumer(bootstrap: str, **extra: object) -> Consumer:
    return Consumer(client_config(bootstrap, **{
        "group.id": f"streamscore-read-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        **extra,
    }))


def partitions(bootstrap: str, topic: str) -> list[int]:
    """The partition numbers of `topic`; a SetupError naming the topic when it does not exist."""
    consumer = _consumer(bootstrap)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise SetupError(f"topic {topic!r} does not exist on {bootstrap}: check the topic options")
        return sorted(metadata.partitions)
    finally:
        consumer.close()


def offsets_for_time(bootstrap: str, topic: str, ms: int) -> dict[int, int]:
    """Per partition, the first offset whose record timestamp is >= `ms` (the partition's end when none is)."""
    consumer = _consumer(bootstrap)
    try:
        wanted = [TopicPartition(topic, p, ms) for p in partitions(bootstrap, topic)]
        found = consumer.offsets_for_times(wanted, timeout=10)
        result = {}
        for tp in found:
            if tp.offset < 0:
                tp.offset = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)[1]
            result[tp.partition] = tp.offset
        return result
    finally:
        consumer.close()


def read_values(
    bootstrap: str,
    topic: str,
    *,
    starts: dict[int, int] | None = None,
    ends: dict[int, int] | None = None,
    stall_timeout_s: float = 60.0,
) -> Iterator[bytes]:
    """The committed values of `topic` from `starts` (default: the beginning) to `ends` (exclusive; default: the
    end of each partition when the read reaches it). Raises SetupError when nothing arrives for `stall_timeout_s`
    before the ends are reached."""
    for record in read_records(bootstrap, topic, starts=starts, ends=ends, stall_timeout_s=stall_timeout_s):
        yield record.value


class TopicRecord(NamedTuple):
    """One committed record of a bounded read: where it is, its key and value (empty for a tombstone)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


def read_records(
    bootstrap: str,
    topic: str,
    *,
    starts: dict[int, int] | None = None,
    ends: dict[int, int] | None = None,
    stall_timeout_s: float = 60.0,
) -> Iterator[TopicRecord]:
    """`read_values` with each record's partition, offset and key."""
    numbers = partitions(bootstrap, topic)
    starts = starts or {}
    pending = {p for p in numbers if ends is None or ends.get(p, 0) > starts.get(p, 0)}
    if not pending:
        return
    consumer = _consumer(bootstrap, **{"enable.partition.eof": True, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in sorted(pending)])
    last_progress = time.monotonic()
    try:
        while pending:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last_progress > stall_timeout_s:
                    raise SetupError(f"reading {topic!r}: no record for {stall_timeout_s:.0f} s before its end "
                                     f"(partitions still open: {sorted(pending)}); is the broker healthy?")
                continue
            last_progress = time.monotonic()
            partition = msg.partition() or 0
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)
                    continue
                raise SetupError(f"reading {topic!r}: {error}")
            offset = msg.offset() or 0
            end = ends.get(partition) if ends is not None else None
            if partition not in pending or (end is not None and offset >= end):
                pending.discard(partition)
                continue
            yield TopicRecord(partition, offset, msg.key(), msg.value() or b"")
            if end is not None and offset >= end - 1:
                pending.discard(partition)
    finally:
        consumer.close()
