"""The faust runtime's worker: a faust-streaming app whose one agent scores micro-batches of the input.

Why it is exactly-once (and why faust's own exactly-once mode is not used)
--------------------------------------------------------------------------
faust's `processing_guarantee="exactly_once"` commits the open transactions on a timer task, independently of
the agent: a commit can land while the agent is in the middle of a batch, committing outputs of events whose
offsets are not yet acked (they are processed again after a crash: duplicates), and faust has no hook that
would let a RocksDB write follow the Kafka commit (upstream: faust-streaming/faust#517 "Duplicate messages despite
exactly_once configuration", #323 duplicates on rebalance with exactly_once, #177 sends outside a transaction; all
open). So faust is used for what it does well - group membership,
rebalances (`on_partitions_revoked/assigned`), fetching, `stream.take_events` micro-batches, the worker life cycle
- and the runtime owns the commit, at batch boundaries:

1. For each input partition `p` in the batch, the events are scored in order inside one RocksDB WriteBatch of
   `p`'s store (`pipelines.runtimes.faust.partitions`); nothing is written to RocksDB yet.
2. Exactly-once: results, dead letters, one changelog record per state version (changelog partition `p`) and
   the input offset (`send_offsets_to_transaction`, the consumer group) go into one Kafka transaction of the
   producer `<prefix>-<p>`. The transactional id is per input partition (KIP-98 fencing), so the next owner of
   `p` - after a crash, a restart or a rebalance - fences this producer and aborts what it left open before it
   rebuilds `p`'s state; a zombie cannot commit afterwards.
3. Only after the commit succeeded is the WriteBatch written, together with `input-next` and `changelog-next`.
   A crash before 3 leaves the store behind Kafka; opening the partition replays the changelog from
   `changelog-next`, so the store catches up with exactly what was committed. A failed commit discards the batch.
4. faust's own offset commits are switched off under exactly-once (they would commit the same offsets outside
   the transaction, possibly after a later transactional commit, moving the group back).

At-least-once: one idempotent producer, flushed after each batch, then the WriteBatch, then faust acks the
events and commits offsets on its timer. A crash re-delivers events since faust's last commit; those below
`input-next` are already in the store and skipped (their outputs were flushed before the store was written).

Rebalances: faust waits for the events in flight to be acked before it revokes partitions; the revocation
handler takes the batch lock, so no commit for a revoked partition happens after it returns; it closes the
partition's store and producer. On assignment the handler starts the partition's producer (fencing) and opens
its store (restoring from the changelog) before any of its events are scored.

Input isolation: the input is read `read_committed` in both modes (`_read_committed`), and a bounded run stops one
past the last record such a consumer sees (`pipelines.runtimes.faust.ends`), not at the high watermark, which a
transactional input's commit markers would keep out of reach.

Keys: state is kept per input partition, so the input must be partitioned by the pipeline's key (as
`streamscore publish` and any keyed producer do); events of one key in two partitions would have two states.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from operators.contract import OperatorContext
from pipelines.kafka import security
from pipelines.registry import PipelineDefinition, get
from pipelines.runtimes.expiry import EventClock
from pipelines.runtimes.faust.options import FaustOptions
from pipelines.runtimes.faust.partitions import CHANGELOG_NEXT, INPUT_NEXT, PartitionState, open_partition
from pipelines.runtimes.faust.scoring import BatchOutputs, PartitionScorer

_LOG = logging.getLogger("streamscore.faust")


class Runner:
    """The agent's side of the worker: partition states, producers, the batch step and the commit."""

    def __init__(self, options: FaustOptions, spec: PipelineDefinition, config: Any) -> None:
        self.options = options
        self.spec = spec
        self.operator = spec.operator_from_config(config)
        self.retention = config.state.retention_policy()  # the config's `state.retention_versions`
        self.state_config = config.state  # `ttl_hours`: partitions sweep expired keys
        self.operator.open(OperatorContext(model_ref=options.model_ref))
        self.scorer = PartitionScorer(spec, self.operator, options.input_topic)
        self.codec = spec.state_codec()
        self.parts: dict[int, PartitionState] = {}
        self.ready: dict[int, asyncio.Event] = {}
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.producer: AIOKafkaProducer | None = None
        self.lock = asyncio.Lock()
        self._partitions: dict[str, list[int]] = {}
        self._partitioner = DefaultPartitioner()
        self.done = asyncio.Event()
        self.ends: dict[int, int] | None = None
        self.position: dict[int, int] = {}
        self.counts = {"events": 0, "results": 0, "dead_letters": 0, "duplicates": 0, "expired_keys": 0,
                       "swept_keys": 0, "batches": 0}
        self._refresh_s = float(config.model_refresh_seconds)
        self._next_refresh = time.monotonic() + self._refresh_s

    # ------------------------------------------------------------------------------------------- producers
    def _producer_config(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.options.bootstrap, "acks": "all", "enable_idempotence": True,
                "linger_ms": 5, "max_batch_size": 1 << 20, **security.active().aiokafka()}

    async def start(self) -> None:
        """Start the at-least-once producer (exactly-once producers start per assigned partition)."""
        if not self.options.exactly_once:
            self.producer = AIOKafkaProducer(**self._producer_config())
            await self.producer.start()

    async def stop(self) -> None:
        """Close every partition and producer, then the operator."""
        async with self.lock:
            for partition in list(self.parts):
                await self._close_partition(partition)
            if self.producer is not None:
                await self.producer.stop()
                self.producer = None
        self.operator.close()

    # ------------------------------------------------------------------------------------------ rebalances
    async def on_assigned(self, assigned: set[TP]) -> None:
        """Fence and open every newly assigned input partition (its producer first, then its state)."""
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.options.input_topic)
        for partition in mine:
            self.ready.setdefault(partition, asyncio.Event())
        for partition in mine:
            if partition in self.parts:
                continue
            if self.options.exactly_once:
                producer = AIOKafkaProducer(
                    transactional_id=f"{self.options.id_prefix}-{partition}", **self._producer_config()
                )
                await producer.start()  # init_transactions: fences the previous owner, aborts its open transaction
                self.producers[partition] = producer
            state = await open_partition(
                bootstrap=self.options.bootstrap, state_dir=self.options.state_dir,
                input_topic=self.options.input_topic, changelog_topic=self.options.changelog_topic,
                partition=partition, codec=self.codec, retention=self.retention,
                read_committed=self.options.exactly_once,
            )
            ttl_ms = self.state_config.ttl_ms
            if ttl_ms is not None:
                state.clock = EventClock(ttl_ms, self.state_config.sweep_check_seconds * 1000)
            self.parts[partition] = state
            _LOG.warning("partition %d assigned: %d versions restored from %s, input from offset %d", partition,
                         state.restored, self.options.changelog_topic, state.input_next)
            self.ready[partition].set()

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Close revoked partitions once the batch in flight (if any) is committed."""
        async with self.lock:
            for tp in revoked:
                if tp.topic == self.options.input_topic:
                    await self._close_partition(tp.partition)

    async def _close_partition(self, partition: int) -> None:
        self.ready.pop(partition, None)
        state = self.parts.pop(partition, None)
        if state is not None:
            state.close()
        producer = self.producers.pop(partition, None)
        if producer is not None:
            await producer.stop()

    # ------------------------------------------------------------------------------------------- batches
    async def process(self, events: list[Any]) -> None:
        """Score and commit one micro-batch (events of any assigned partitions, each partition in order)."""
        by_partition: dict[int, list[tuple[int, bytes | None]]] = defaultdict(list)
        for event in events:
            message = event.message
            if message.topic == self.options.input_topic:
                by_partition[message.partition].append((message.offset, message.value))
        async with self.lock:
            if self._refresh_s > 0 and time.monotonic() >= self._next_refresh:
                self._refresh_models()
            for partition, records in by_partition.items():
                ready = self.ready.get(partition)
                if ready is None:  # not (or no longer) ours: its new owner scores these events
                    continue
                await ready.wait()
                state = self.parts.get(partition)
                if state is not None:
                    await self._process_partition(state, records)
            self.counts["events"] += len(events)
            self.counts["batches"] += 1
            self._check_done()

    async def _process_partition(self, state: PartitionState, records: list[tuple[int, bytes | None]]) -> None:
        with state.store.write_batch():  # written only if the Kafka side commits (see the module doc)
            out = self.scorer.score(state.store, state.partition, records, state.input_next)
            if out.next_offset is None:
                return
            if state.clock is not None:
                if out.newest_event_time is not None:
                    state.clock.saw(out.newest_event_time, int(time.time() * 1000))
                swept = state.sweep(len(records))  # as many keys examined as events scored
                out.changelog.extend((key.encode(), None) for key in swept)
                self.counts["swept_keys"] += len(swept)
            changelog_end = await self._deliver(state.partition, out)
            state.store.put_meta(INPUT_NEXT, str(out.next_offset).encode())
            if changelog_end is not None:
                state.store.put_meta(CHANGELOG_NEXT, str(changelog_end).encode())
        state.input_next = out.next_offset
        if changelog_end is not None:
            state.changelog_next = changelog_end
        self.position[state.partition] = out.next_offset
        self.counts["results"] += len(out.results)
        self.counts["dead_letters"] += len(out.dead_letters)
        self.counts["duplicates"] += out.duplicates
        self.counts["expired_keys"] += out.expired_keys

    async def _deliver(self, partition: int, out: BatchOutputs) -> int | None:
        """Publish the batch's outputs (and, exactly-once, its input offset) and return the changelog's next
        offset after them; raises if they could not be committed (the caller then writes nothing)."""
        options = self.options
        if options.exactly_once:
            producer = self.producers[partition]
            async with producer.transaction():
                changelog = await self._send_all(producer, partition, out)
                await producer.send_offsets_to_transaction(
                    {TopicPartition(options.input_topic, partition): out.next_offset}, options.group_id
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
        """Send the batch's records in record batches per topic partition (one future per batch, not per
        record); results are partitioned by key like Kafka's default partitioner, the changelog by input
        partition. Returns the changelog's send futures (in order)."""
        options = self.options
        await self._batches(producer, options.output_topic, out.results, None)
        await self._batches(producer, options.dlq_topic, [(None, v) for v in out.dead_letters], None)
        return await self._batches(producer, options.changelog_topic, out.changelog, partition)

    async def _batches(
        self, producer: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
        partition: int | None,
    ) -> list[Any]:
        if not records:
            return []
        partitions = self._partitions.get(topic)
        if partitions is None:
            partitions = self._partitions[topic] = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        for key, value in records:
            target = partition if partition is not None else self._partitioner(key, partitions, partitions)
            by_partition[target].append((key, value))
        futures = []
        for target, chunk in by_partition.items():
            batch = producer.create_batch()
            for key, value in chunk:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    futures.append((await producer.send_batch(batch, topic, partition=target), batch.record_count()))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append((await producer.send_batch(batch, topic, partition=target), batch.record_count()))
        return futures

    def _refresh_models(self) -> None:
        self._next_refresh = time.monotonic() + self._refresh_s
        for swap in self.operator.refresh_models():
            if swap.error is None:
                _LOG.warning("%s: model %s swapped %s -> %s", self.spec.name, swap.reference, swap.old, swap.new)
            else:
                _LOG.error("%s: model %s stays %s; %s refused: %s", self.spec.name, swap.reference, swap.old,
                           swap.new, swap.error)

    def _check_done(self) -> None:
        if self.ends is None:
            return
        if all(self.position.get(p, 0) >= end for p, end in self.ends.items()):
            self.done.set()


def build_app(options: FaustOptions, runner: Runner) -> faust.App:
    """The faust app: one agent over the input topic, micro-batched, with the runner's rebalance handlers."""
    datadir = options.state_dir / "faust-app"  # faust's own folder (empty: tables are not used)
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        options.group_id,
        broker=f"kafka://{options.bootstrap}",
        broker_credentials=_credentials(security.active()),
        processing_guarantee="at_least_once",  # the runtime owns exactly-once (module doc)
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        autodiscover=False,
        stream_wait_empty=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 3),
        producer_acks=-1,
    )
    source = app.topic(options.input_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    within = options.batch_window_ms / 1000

    async def score(stream: Any) -> None:  # a faust Stream (StreamT does not declare take_events)
        async for events in stream.take_events(options.batch_size, within=within):
            await runner.process(list(events))

    app.agent(source, name=f"streamscore-{options.pipeline}")(score)
    _read_committed(app)

    async def assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        if options.exactly_once:
            _disable_faust_commits(app)
        await runner.on_assigned(assigned)

    async def revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        await runner.on_revoked(revoked)

    app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]  # faust awaits async receivers
    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

    return app


def _credentials(settings: security.KafkaSecurity) -> faust.types.auth.CredentialsT | None:
    """faust's form of the process's Kafka security settings (None: PLAINTEXT)."""
    if settings.uses_sasl:
        assert settings.password is not None
        return faust.SASLCredentials(
            username=settings.username, password=settings.password.reveal(), mechanism=settings.mechanism,
            ssl_context=settings.ssl_context() if settings.uses_tls else None,
        )
    if settings.uses_tls:
        return faust.SSLCredentials(settings.ssl_context())
    return None


def _read_committed(app: faust.App) -> None:
    """Read the input `read_committed`, whatever the delivery (as the Flink job does): records of aborted upstream
    transactions are never scored. faust reads `read_uncommitted` unless its own exactly-once mode is on, which
    this runtime does not use (module doc), so the worker consumer is created with the isolation level set."""
    thread = app.consumer._thread  # type: ignore[attr-defined]  # the aiokafka driver's consumer thread
    create = thread._create_worker_consumer

    def read_committed_consumer(transport: Any) -> Any:
        consumer = create(transport)
        consumer._isolation_level = "read_committed"  # read by aiokafka's Fetcher when the consumer starts
        return consumer

    thread._create_worker_consumer = read_committed_consumer


def _disable_faust_commits(app: faust.App) -> None:
    """Under exactly-once the transaction commits the offsets; faust's own commits are switched off."""
    consumer = app.consumer

    async def no_commit(*_: Any, **__: Any) -> bool:
        return False

    consumer.commit = no_commit  # type: ignore[method-assign]


async def serve(options: FaustOptions, runner: Runner) -> None:
    """Run the worker until SIGINT/SIGTERM, or (bounded) until the input's end offsets are committed."""
    app = build_app(options, runner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.start()
    await app.start()
    try:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(runner.done.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    finally:
        await app.stop()
        await runner.stop()


def run(options: FaustOptions) -> dict[str, int]:
    """Run the pipeline on the faust runtime (blocking); returns the counts of what it processed."""
    from pipelines.kafka.clients import committed_offsets, end_offsets
    from pipelines.runtimes.faust.ends import stop_offsets

    spec = get(options.pipeline)
    config = spec.load_config(options.config_path)
    runner = Runner(options, spec, config)
    if options.bounded:
        ends = end_offsets(options.bootstrap, options.input_topic)
        committed = committed_offsets(options.bootstrap, options.group_id, options.input_topic, ends)
        runner.position = {p: max(0, committed.get(p, -1)) for p in ends}
        runner.ends = stop_offsets(options.bootstrap, options.input_topic, runner.position, ends)
        runner._check_done()
    if runner.done.is_set():
        runner.operator.close()
        return runner.counts
    asyncio.run(serve(options, runner))
    return runner.counts
