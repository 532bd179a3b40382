"""Records to Kafka in record batches: one send per topic partition and batch, not one future per record.

Keyed records go to the partition Kafka's default partitioner picks (murmur2 of the key, as the Java client and
librdkafka's `murmur2_random` do), so results land where a keyed producer would put them; the partition of each
key is remembered (aiokafka's partitioner is pure Python, ~1.6 µs a record, and a stream's keys repeat).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

#: Keys whose partition is remembered per topic (a dict cleared when full: bounded memory, no LRU cost).
PARTITION_CACHE_KEYS = 200_000


class RecordSender:
    """Sends lists of (key, value) records through an aiokafka producer in record batches."""

    def __init__(self) -> None:
        self._partitions: dict[str, int] = {}
        self._by_key: dict[str, dict[bytes, int]] = {}

    async def partition_count(self, producer: AIOKafkaProducer, topic: str) -> int:
        """The number of partitions of `topic` (asked once per topic)."""
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = len(await producer.partitions_for(topic))
        return count

    async def partition_of(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int:
        """The partition Kafka's default partitioner gives `key` in `topic`."""
        count = await self.partition_count(producer, topic)
        return self._partition(topic, count, key)

    def _partition(self, topic: str, count: int, key: bytes) -> int:
        cache = self._by_key.get(topic)
        if cache is None:
            cache = self._by_key[topic] = {}
        found = cache.get(key)
        if found is None:
            if len(cache) >= PARTITION_CACHE_KEYS:
                cache.clear()
            found = cache[key] = (murmur2(key) & 0x7FFFFFFF) % count
        return found

    async def send(
        self, producer: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
        partition: int | None = None, timestamps: Sequence[int | None] | None = None,
    ) -> list[tuple[Any, int]]:
        """Send `records` to `topic` (all to `partition` if given, else by key; a record without a key goes to
        partition 0's batch of this call); `timestamps` (epoch ms, None: now) per record if given. Returns
        (future of the record batch's metadata, records in it) per batch sent, in order."""
        if not records:
            return []
        if partition is not None:
            groups: dict[int, list[int]] = {partition: list(range(len(records)))}
        else:
            count = await self.partition_count(producer, topic)
            groups = defaultdict(list)
            for index, (key, _) in enumerate(records):
                groups[0 if key is None else self._partition(topic, count, key)].append(index)
        futures = []
        for target, indexes in groups.items():
            batch = producer.create_batch()
            for index in indexes:
                key, value = records[index]
                timestamp = None if timestamps is None else timestamps[index]
                if batch.append(key=key, value=value, timestamp=timestamp) is None:  # full: send it, start another
                    futures.append((await producer.send_batch(batch, topic, partition=target), batch.record_count()))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=timestamp)
            futures.append((await producer.send_batch(batch, topic, partition=target), batch.record_count()))
        return futures
