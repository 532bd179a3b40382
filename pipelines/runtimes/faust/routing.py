"""Repartitioning: input records into an internal topic keyed (and so partitioned) by the pipeline's key.

State is kept per partition of the scored topic, so an account whose events sit in two input partitions (records
produced without a key, or keyed by `event_id`) would have two states. As Kafka Streams, faust's `group_by` and
Quix's `group_by` do, the worker then reads the input only to route it: each record's value is decoded, its
pipeline key taken, and the record's bytes are produced unchanged (with their timestamp) to
`<group>-repartition`, keyed by that key, into the partition Kafka's default partitioner gives the key (the topic
has as many partitions as the input). The scoring step reads that topic instead of the input. A record that
cannot be decoded becomes a dead letter here, naming its input topic, partition and offset.

Exactly once across the hop: for each input partition `p`, a batch's routed records, its dead letters and the
input offset after it commit in one transaction of the producer `<prefix>-route-<p>` (fenced like the scoring
producers), and the repartition topic is read `read_committed`: a routed record is scored once whatever crashes,
as any committed input record is (the scoring step's own argument, `pipelines.runtimes.faust.worker`). Commits of
one partition are chained in order like the scoring step's. At-least-once: the shared producer is flushed, then
the input offset committed; a crash may route a record twice, and the operator's idempotency ids drop the copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from operators.dead_letter import dead_letter_json
from operators.decoding import Rejection
from pipelines.registry import PipelineDefinition
from pipelines.runtimes.faust.delivery import RecordSender
from pipelines.runtimes.faust.metrics import WorkerMetrics
from pipelines.runtimes.faust.options import FaustOptions

_LOG = logging.getLogger("streamscore.faust")


def repartition_topic(group_id: str) -> str:
    """The internal topic a deployment (consumer group) repartitions its input through."""
    return f"{group_id}-repartition"


class Router:
    """Routes input partitions' records into the repartition topic (see the module docstring)."""

    def __init__(self, options: FaustOptions, spec: PipelineDefinition, producer_config: dict[str, Any],
                 sender: RecordSender, metrics: WorkerMetrics) -> None:
        assert options.repartition_topic is not None
        self.options = options
        self.topic = options.repartition_topic
        self._spec = spec
        self._decoder = spec.decoder()
        self._key_of = spec.key_of
        self._producer_config = producer_config
        self._sender = sender
        self._metrics = metrics
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self._last: dict[int, asyncio.Task[None]] = {}
        #: Input partitions assigned whose producer is not started yet (set once it is, or failed to).
        self._opening: dict[int, asyncio.Event] = {}
        self.position: dict[int, int] = {}
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the at-least-once producer (exactly-once producers start per assigned input partition)."""
        if not self.options.exactly_once:
            self.producer = AIOKafkaProducer(**self._producer_config)
            await self.producer.start()

    async def stop(self) -> None:
        """Await the commits in flight and close every producer."""
        async with self.lock:
            await self._close(list(self.producers) or list(self._last))
            if self.producer is not None:
                await self.producer.stop()
                self.producer = None

    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Start (and so fence) the routing producer of each newly assigned input partition."""
        if not self.options.exactly_once:
            return
        new = [p for p in sorted(partitions) if p not in self.producers]
        for partition in new:
            self._opening.setdefault(partition, asyncio.Event())
        for partition in new:
            try:
                producer = AIOKafkaProducer(transactional_id=f"{self.options.id_prefix}-route-{partition}",
                                            **self._producer_config)
                await producer.start()
                self.producers[partition] = producer
            finally:
                opened = self._opening.pop(partition, None)
                if opened is not None:
                    opened.set()

    async def on_revoked(self, partitions: Sequence[int]) -> None:
        """Await the revoked partitions' commits (a failure is logged: the next owner routes those records)."""
        async with self.lock:
            await self._close(partitions)

    async def _close(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            task = self._last.pop(partition, None)
            if task is not None:
                try:
                    await task
                except Exception as exc:
                    _LOG.error("input partition %d: routing commit failed (%s: %s); the next owner routes those "
                               "records", partition, type(exc).__name__, exc)
            producer = self.producers.pop(partition, None)
            if producer is not None:
                await producer.stop()

    async def route(self, partition: int, messages: list[Any]) -> bool:
        """Route one input partition's fetched records; their commit runs behind the partition's previous one.
        False if they were not taken (the partition's producer is not started: not yet, or no longer ours)."""
        if not messages:
            return True
        async with self.lock:
            opening = self._opening.get(partition)
            if opening is not None:
                await opening.wait()
            if self.options.exactly_once and partition not in self.producers:
                return False
            records: list[tuple[bytes | None, bytes | None]] = []
            stamps: list[int | None] = []
            letters: list[tuple[bytes | None, bytes | None]] = []
            for message in messages:
                raw = b"" if message.value is None else message.value
                event = self._decoder.decode(raw)
                if isinstance(event, Rejection):
                    letters.append((None, self._letter(event.reason, event.error, raw, partition, message.offset)))
                    continue
                records.append((self._key_of(event).encode(), raw))
                stamps.append(message.timestamp if message.timestamp and message.timestamp > 0 else None)
            previous = self._last.get(partition)
            if previous is not None and previous.done():
                await previous  # raises if it failed: the worker stops, the next start routes from the commit
                previous = None
            self._last[partition] = asyncio.create_task(
                self._commit(partition, records, stamps, letters, messages[-1].offset + 1, previous))
        return True

    def _letter(self, reason: str, error: str, raw: bytes, partition: int, offset: int) -> bytes:
        self._metrics.count(self._metrics.dead_letters, reason)
        return dead_letter_json(self._spec.name, reason, error, raw, topic=self.options.input_topic,
                                partition=partition, offset=offset)

    async def _commit(self, partition: int, records: list[tuple[bytes | None, bytes | None]],
                      stamps: list[int | None], letters: list[tuple[bytes | None, bytes | None]], next_offset: int,
                      after: asyncio.Task[None] | None) -> None:
        if after is not None:
            await after
        options, sender = self.options, self._sender
        source = TopicPartition(options.input_topic, partition)
        if options.exactly_once:
            producer = self.producers[partition]
            async with producer.transaction():
                await sender.send(producer, self.topic, records, timestamps=stamps)
                await sender.send(producer, options.dlq_topic, letters)
                await producer.send_offsets_to_transaction({source: next_offset}, options.group_id)
        else:
            assert self.producer is not None
            await sender.send(self.producer, self.topic, records, timestamps=stamps)
            await sender.send(self.producer, options.dlq_topic, letters)
            await self.producer.flush()
            if self.consumer is not None:
                try:
                    await self.consumer.commit({source: next_offset})
                except Exception as exc:  # e.g. a rebalance in progress: a later batch commits past it
                    _LOG.warning("input partition %d: offset commit skipped (%s)", partition, type(exc).__name__)
        self.position[partition] = next_offset

    def raise_failed(self) -> None:
        """Raise the error of a routing commit that failed (the worker stops; the next start routes again)."""
        for task in self._last.values():
            if task.done() and task.exception() is not None:
                task.result()

    def routed_all(self, ends: dict[int, int]) -> bool:
        """Whether every input partition's routing is committed up to its offset in `ends`."""
        return all(self.position.get(p, 0) >= end for p, end in ends.items())
