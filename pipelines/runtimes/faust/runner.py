"""The worker's batch step: partition states and producers, scoring, and commits chained behind the scoring.

One input partition `p` (of the scored topic: the input, or the repartition topic) at a time:

1. Its records are scored into the partition store's open write batch (`RocksVersionedStore.begin_batch`): reads
   see every batch scored so far, nothing is written to RocksDB yet.
2. Its outputs (results, dead letters, changelog records, the next input offset) are queued for `p`'s committer
   task, which commits what is queued in one transaction of the producer `<prefix>-<p>` (with the input offset,
   exactly-once) or one flush (at-least-once), then what was queued meanwhile, until nothing is left. One commit
   of `p` at a time, in scoring order; a failed one stops every later one.
3. The next batch of `p` is scored while that commit runs: scoring never waits for a commit.
4. When the committer has committed everything (at once when the partition is idle, or every
   `MAX_OPEN_BATCH_S` under load, when scoring waits for it), the write batch is written to RocksDB with
   `input-next` and `changelog-next` of the last committed batch: the store is never ahead of Kafka (see
   `pipelines.runtimes.faust.worker`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from operators.contract import OperatorContext
from pipelines.kafka import security
from pipelines.registry import PipelineDefinition
from pipelines.runtimes.expiry import EventClock
from pipelines.runtimes.faust.delivery import RecordSender
from pipelines.runtimes.faust.flight import Flight
from pipelines.runtimes.faust.metrics import LATENCY_SAMPLE, WorkerMetrics
from pipelines.runtimes.faust.options import FaustOptions
from pipelines.runtimes.faust.partitions import CHANGELOG_NEXT, INPUT_NEXT, PartitionState, open_partition
from pipelines.runtimes.faust.scoring import BatchOutputs, PartitionScorer
from pipelines.runtimes.gc_tuning import tune_for_scoring
from pipelines.runtimes.hot_swap import report_swaps

_LOG = logging.getLogger("streamscore.faust")

#: Longest a partition store's write batch stays open under continuous load before its commits are awaited
#: and it is written (the state a restart replays from the changelog is at most this old).
MAX_OPEN_BATCH_S = 0.5


class Runner:
    """The worker's side that is not fetching: partitions, producers, the batch step and its commits."""

    def __init__(self, options: FaustOptions, spec: PipelineDefinition, config: Any,
                 metrics: WorkerMetrics | None = None) -> None:
        self.options = options
        self.spec = spec
        self.topic = options.scored_topic
        self.operator = spec.operator_from_config(config)
        self.retention = config.state.retention_policy()  # the config's `state.retention_versions`
        self.state_config = config.state  # `ttl_hours`: partitions sweep expired keys
        self.operator.open(OperatorContext(model_ref=options.model_ref))
        tune_for_scoring()  # the start-up heap (faust, the clients, the model) frozen out of every collection
        self.scorer = PartitionScorer(spec, self.operator, self.topic)
        self.codec = spec.state_codec()
        self.parts: dict[int, PartitionState] = {}
        self.flights: dict[int, Flight] = {}
        #: Partitions assigned but not open yet (set when open, or when opening failed).
        self.opening: dict[int, asyncio.Event] = {}
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.lock = asyncio.Lock()
        self.sender = RecordSender()
        self.metrics = metrics or WorkerMetrics(spec.name)
        self.metrics.model_versions = self._model_versions
        self.metrics.remote = self.operator.remote_metrics
        self.done = asyncio.Event()
        self.ends: dict[int, int] | None = None
        self.position: dict[int, int] = {}
        self.counts = {"events": 0, "results": 0, "dead_letters": 0, "duplicates": 0, "expired_keys": 0,
                       "swept_keys": 0, "batches": 0, "commits": 0}
        self._refresh_s = float(config.model_refresh_seconds)
        self._next_refresh = time.monotonic() + self._refresh_s

    # ------------------------------------------------------------------------------------------- producers
    def producer_config(self) -> dict[str, Any]:
        """The aiokafka producer settings every producer of the worker shares."""
        return {"bootstrap_servers": self.options.bootstrap, "acks": "all", "enable_idempotence": True,
                "linger_ms": 0, "max_batch_size": 1 << 20, **security.active().aiokafka()}

    async def start(self) -> None:
        """Start the at-least-once producer (exactly-once producers start per assigned partition)."""
        if not self.options.exactly_once:
            self.producer = AIOKafkaProducer(**self.producer_config())
            await self.producer.start()

    async def stop(self) -> None:
        """Commit and write what is in flight, close every partition and producer, then the operator."""
        async with self.lock:
            for partition in list(self.parts):
                await self._close_partition(partition, settle=True)
            if self.producer is not None:
                await self.producer.stop()
                self.producer = None
        self.operator.close()

    # ------------------------------------------------------------------------------------------ rebalances
    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Fence and open every newly assigned partition (its producer first, then its state). The consumer may
        hand out records of a partition before this returns: `process` waits for the partition to be open."""
        new = [p for p in sorted(partitions) if p not in self.parts]
        for partition in new:
            self.opening.setdefault(partition, asyncio.Event())
        for partition in new:
            try:
                await self._open_partition(partition)
            finally:
                opened = self.opening.pop(partition, None)
                if opened is not None:
                    opened.set()

    async def _open_partition(self, partition: int) -> None:
        if self.options.exactly_once:
            producer = AIOKafkaProducer(
                transactional_id=f"{self.options.id_prefix}-{partition}", **self.producer_config()
            )
            await producer.start()  # init_transactions: fences the previous owner, aborts its open transaction
            self.producers[partition] = producer
        try:
            state = await open_partition(
                bootstrap=self.options.bootstrap, state_dir=self.options.state_dir,
                input_topic=self.topic, changelog_topic=self.options.changelog_topic,
                partition=partition, codec=self.codec, retention=self.retention,
                read_committed=self.options.exactly_once,
            )
        except BaseException:
            producer = self.producers.pop(partition, None)
            if producer is not None:
                await producer.stop()
            raise
        ttl_ms = self.state_config.ttl_ms
        if ttl_ms is not None:
            state.clock = EventClock(ttl_ms, self.state_config.sweep_check_seconds * 1000)
        self.parts[partition] = state
        self.flights[partition] = Flight(state.input_next, state.input_next, state.changelog_next)
        _LOG.warning("partition %d assigned: %d versions restored from %s, input from offset %d", partition,
                     state.restored, self.options.changelog_topic, state.input_next)

    async def on_revoked(self, partitions: Sequence[int]) -> None:
        """Close revoked partitions once their batches in flight are committed (or failed: then discarded)."""
        async with self.lock:
            for partition in partitions:
                await self._close_partition(partition, settle=True)

    async def _close_partition(self, partition: int, *, settle: bool) -> None:
        state = self.parts.get(partition)
        if state is not None and settle:
            try:
                await self._settle(state)
            except Exception as exc:  # a failed commit: the store keeps what was committed before it
                _LOG.error("partition %d: a batch's commit failed (%s: %s); its state is not written, the next "
                           "owner replays it", partition, type(exc).__name__, exc)
        self.parts.pop(partition, None)
        self.flights.pop(partition, None)
        if state is not None:
            state.store.discard_batch()
            state.close()
        producer = self.producers.pop(partition, None)
        if producer is not None:
            await producer.stop()

    # ------------------------------------------------------------------------------------------- batches
    async def process(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> list[TopicPartition]:
        """Score one fetched batch (records of any assigned partitions, each partition's in offset order) and
        start its commits. Returns the partitions whose records were not taken because the partition is not
        open (the consumer may fetch before the assignment listener ran): the caller fetches them again if they
        are still assigned."""
        skipped = []
        async with self.lock:
            if self._refresh_s > 0 and time.monotonic() >= self._next_refresh:
                self._refresh_models()
            for tp, messages in batch.items():
                if tp.topic != self.topic:
                    continue
                opening = self.opening.get(tp.partition)
                if opening is not None:
                    await opening.wait()
                state = self.parts.get(tp.partition)
                if state is None:  # not open (yet, or no longer ours: then its new owner scores them)
                    skipped.append(tp)
                    continue
                await self._score(state, self.flights[tp.partition], messages)
            await self._settle_finished()
        return skipped

    async def settle_idle(self) -> None:
        """Write every partition whose commits are all done (called when a fetch found nothing)."""
        async with self.lock:
            for partition in list(self.parts):
                await self._settle(self.parts[partition])

    async def _settle_finished(self) -> None:
        for partition, flight in self.flights.items():
            if flight.queued is None and flight.committer is not None and flight.committer.done():
                await self._settle(self.parts[partition])

    async def _score(self, state: PartitionState, flight: Flight, messages: list[ConsumerRecord[Any, Any]]) -> None:
        if flight.failed is not None:
            raise flight.failed
        store = state.store
        if store.in_batch and time.monotonic() - flight.opened_at > MAX_OPEN_BATCH_S:
            await self._settle(state)
        if not store.in_batch:
            store.begin_batch()
            flight.opened_at = time.monotonic()
        records = [(m.offset, m.value) for m in messages]
        out = self.scorer.score(store, state.partition, records, flight.scored_next)
        if out.next_offset is None:
            return
        if state.clock is not None:
            if out.newest_event_time is not None:
                state.clock.saw(out.newest_event_time, int(time.time() * 1000))
            swept = state.sweep(len(records))  # as many keys examined as events scored
            out.changelog.extend((key.encode(), None) for key in swept)
            self.counts["swept_keys"] += len(swept)
            self.metrics.swept_keys += len(swept)
        flight.scored_next = out.next_offset
        self.counts["batches"] += 1
        self.metrics.batches += 1
        self.metrics.batch_size.add(len(records))
        flight.queue(out, len(records),
                     [m.timestamp for m in messages[::LATENCY_SAMPLE] if m.timestamp is not None and m.timestamp > 0])
        if flight.committer is None or flight.committer.done():
            flight.committer = asyncio.create_task(self._commit(state.partition, flight))

    async def _commit(self, partition: int, flight: Flight) -> None:
        """Commit what is queued, one transaction (or flush) at a time, until nothing is left; a failure stops
        every later commit of the partition."""
        while flight.queued is not None:
            out, events, stamps = flight.take()
            assert out is not None and out.next_offset is not None
            started = time.perf_counter()
            try:
                changelog_end = await self._deliver(partition, out)
            except BaseException as exc:
                flight.failed = exc
                raise
            if not self.options.exactly_once and self.consumer is not None:
                try:  # at-least-once: offsets follow the flushed outputs (a failed commit only means a replay)
                    await self.consumer.commit({TopicPartition(self.topic, partition): out.next_offset})
                except Exception as exc:  # e.g. a rebalance in progress; a later batch commits past it
                    _LOG.warning("partition %d: offset commit skipped (%s)", partition, type(exc).__name__)
            flight.committed_input = out.next_offset
            if changelog_end is not None:
                flight.committed_changelog = changelog_end
            self._count(out, events, stamps, (time.perf_counter() - started) * 1000, time.time())
            self.position[partition] = out.next_offset
            self.check_done()

    async def _settle(self, state: PartitionState) -> None:
        """Await the partition's commits, then write its open write batch with the offsets they reached."""
        flight = self.flights.get(state.partition)
        if flight is None:
            return
        committer = flight.committer
        if committer is not None:
            await asyncio.wait([committer])
        if flight.failed is not None:
            state.store.discard_batch()  # scored on top of a batch that did not commit: none of it is kept
            raise flight.failed
        store = state.store
        if not store.in_batch:
            return
        store.put_meta(INPUT_NEXT, str(flight.committed_input).encode())
        store.put_meta(CHANGELOG_NEXT, str(flight.committed_changelog).encode())
        store.commit_batch()
        state.input_next = flight.committed_input
        state.changelog_next = flight.committed_changelog

    def _count(self, out: BatchOutputs, events: int, stamps: list[int], commit_ms: float, now_s: float) -> None:
        counts, metrics = self.counts, self.metrics
        counts["events"] += events
        counts["commits"] += 1
        counts["results"] += len(out.results)
        counts["dead_letters"] += len(out.dead_letters)
        counts["duplicates"] += out.duplicates
        counts["expired_keys"] += out.expired_keys
        metrics.commits += 1
        metrics.events_scored += len(out.results)
        metrics.duplicate_events += out.duplicates
        metrics.expired_keys += out.expired_keys
        for decision, n in out.decisions.items():
            metrics.count(metrics.decisions, decision, n)
        for reason, n in out.letter_reasons.items():
            metrics.count(metrics.dead_letters, reason, n)
        metrics.commit_ms.add(commit_ms, now_s)
        now_ms = now_s * 1000
        for stamp in stamps:
            metrics.latency_ms.add(max(0.0, now_ms - stamp), now_s)

    async def _deliver(self, partition: int, out: BatchOutputs) -> int | None:
        """Publish the batch's outputs (and, exactly-once, its input offset) and return the changelog's next
        offset after them; raises if they could not be committed."""
        options = self.options
        if options.exactly_once:
            producer = self.producers[partition]
            async with producer.transaction():
                changelog = await self._send_all(producer, partition, out)
                await producer.send_offsets_to_transaction(
                    {TopicPartition(self.topic, partition): out.next_offset}, options.group_id
                )
        else:
            assert self.producer is not None
            changelog = await self._send_all(self.producer, partition, out)
            await self.producer.flush()
        if not changelog:
            return None
        future, count = changelog[-1]
        metadata = await future  # a record batch's base offset
        return int(metadata.offset) + count

    async def _send_all(self, producer: AIOKafkaProducer, partition: int, out: BatchOutputs) -> list[Any]:
        """Results by key (Kafka's default partitioner), dead letters, the changelog into partition `partition`;
        returns the changelog's record batch futures (in order)."""
        options, sender = self.options, self.sender
        await sender.send(producer, options.output_topic, out.results)
        await sender.send(producer, options.dlq_topic, [(None, v) for v in out.dead_letters])
        return await sender.send(producer, options.changelog_topic, out.changelog, partition)

    def _refresh_models(self) -> None:
        self._next_refresh = time.monotonic() + self._refresh_s
        counts = report_swaps(self.spec.name, self.operator.refresh_models())
        self.metrics.model_swaps += counts.swapped
        self.metrics.model_swap_failures += counts.failed

    def _model_versions(self) -> dict[str, int]:
        model = getattr(self.operator, "model", None)
        if model is None:
            return {}
        name, _, version = str(model.ref).rpartition("@")
        return {name: int(version) if version.isdigit() else 0}

    def lag(self) -> dict[int, int]:
        """Per assigned partition: its high watermark (as last fetched) minus the offset committed for it."""
        consumer = self.consumer
        if consumer is None:
            return {}
        lags = {}
        for partition, flight in self.flights.items():
            high = consumer.highwater(TopicPartition(self.topic, partition))
            if high is not None:
                lags[partition] = max(0, high - flight.committed_input)
        return lags

    def check_done(self) -> None:
        """Set `done` once every partition's committed position reached its bounded run's end."""
        if self.ends is None:
            return
        if all(self.position.get(p, 0) >= end for p, end in self.ends.items()):
            self.done.set()
