"""Where a bounded faust run stops: per input partition, one past the last record a read_committed consumer sees.

The high watermark is not that offset when the input was written with transactions (by another streamscore job,
say): commit and abort markers occupy offsets but are never delivered, and aborted records are skipped, so a
worker that waited for "position >= high watermark" would wait forever after the last marker. The stop offset is
found by reading each partition's tail with a read_committed consumer (backwards in growing windows until a
record is found or the start offset is reached); a partition with nothing to read stops at its start.
"""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from pipelines.kafka.clients import client_config

#: The first window read back from a partition's end (doubled until a record is found).
FIRST_WINDOW = 64


def _last_record_offset(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> int | None:
    """The offset of the last record in [start, end) a read_committed consumer delivers, or None."""
    window = FIRST_WINDOW
    upper = end
    while upper > start:
        lower = max(start, upper - window)
        consumer.assign([TopicPartition(topic, partition, lower)])
        last: int | None = None
        while True:
            message = consumer.poll(2.0)
            if message is None:
                break
            if message.error() is not None:
                continue
            offset = message.offset()
            if offset is None or offset >= upper:
                break
            last = offset
            if offset == upper - 1:
                break
        if last is not None:
            return last
        upper = lower
        window *= 2
    return None


def stop_offsets(bootstrap: str, topic: str, starts: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """Per partition, one past the last committed record in [start, end) (`start` if there is none)."""
    consumer = Consumer(client_config(bootstrap, **{
        "group.id": f"streamscore-probe-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed", "enable.auto.commit": False, "enable.partition.eof": False,
    }))
    try:
        stops = {}
        for partition, end in ends.items():
            start = starts.get(partition, 0)
            last = _last_record_offset(consumer, topic, partition, start, end) if end > start else None
            stops[partition] = start if last is None else last + 1
        return stops
    finally:
        consumer.close()
