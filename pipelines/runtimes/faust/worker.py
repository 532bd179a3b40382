"""The faust runtime's worker: Python owns the fetch loop, scores what was fetched, commits behind the scoring.

What is faust's here and what is not (measured 2026-12-06, one core, risk events)
----------------------------------------------------------------------------------
faust hands records to user code only through a Stream: its consumer thread fetches, the conductor puts each
message on the agent's queue and the stream takes them one by one (`take_events` included). That path cost ~20 µs
per message in mode's `wait_first` (4 tasks created, 3 cancelled per message), 2.6 µs of sensors and 1.7 µs of
`sleep(0)`, about as much as scoring the event. faust's group membership and rebalance callbacks belong to that
same consumer (it runs in its own thread and event loop), so there is no public way to keep faust's membership
and fetch differently. The runtime therefore uses faust's Kafka client, aiokafka, directly: one
`AIOKafkaConsumer` in the worker's loop does group membership (the same group protocol faust uses), rebalances
(`ConsumerRebalanceListener`, awaited before the group moves on) and fetching (`getmany`: up to `--batch-size`
already-fetched records in one call, records parsed by aiokafka's C extension, no task or queue per record).
Measured on 100k risk records: aiokafka `getmany(500)` 1.5 µs CPU per record, confluent-kafka `consume(500)`
0.9 µs (librdkafka's threads included): both far below the ~20 µs of scoring, and aiokafka keeps the worker in
one asyncio loop with transactional producers whose commits can be awaited concurrently with scoring (the
confluent-kafka client's transaction calls block the calling thread). faust stays the runtime's name and its
client; faust's own exactly-once mode was never usable (below).

Batches: `getmany` returns at once when records are already fetched (up to `--batch-size`); at low load an event
is scored as soon as it arrives, nothing waits for a batch to fill. Batches scored while a partition's commit is
in flight join its next transaction (group commit), so transactions grow with the load without delaying scoring.
`--batch-window` (kept for compatibility) is not waited for: there is no window left to wait in.

Why it is exactly-once (and why faust's own exactly-once mode is not used)
--------------------------------------------------------------------------
faust's `processing_guarantee="exactly_once"` commits the open transactions on a timer task, independently of
the agent: a commit can land while the agent is in the middle of a batch, committing outputs of events whose
offsets are not yet acked, and faust has no hook that would let a RocksDB write follow the Kafka commit (upstream:
faust-streaming/faust#517 "Duplicate messages despite exactly_once configuration", #323 duplicates on rebalance
with exactly_once, #177 sends outside a transaction; all open). The runtime owns the commit, per input partition
`p` (`pipelines.runtimes.faust.runner`):

1. `p`'s records are scored in order into the open RocksDB write batch of `p`'s store
   (`pipelines.runtimes.faust.partitions`); nothing is written to RocksDB yet.
2. Exactly-once: results, dead letters, one changelog record per state version (changelog partition `p`) and the
   input offset (`send_offsets_to_transaction`, the consumer group) go into one Kafka transaction of the producer
   `<prefix>-<p>`. The transactional id is per input partition (KIP-98 fencing), so the next owner of `p` - after
   a crash, a restart or a rebalance - fences this producer and aborts what it left open before it rebuilds `p`'s
   state; a zombie cannot commit afterwards.
3. Overlap: that commit runs in the partition's committer task while the next batches of `p` are scored on top
   of the open write batch (they read the state the earlier batches left); their outputs queue, in order, for
   the committer's next transaction. One transaction of `p` at a time, in scoring order, and a failed commit
   stops every later one, so the committed transactions always cover a prefix of the scored batches, each batch
   having read exactly the state its predecessors committed.
4. Only when every batch in the write batch has committed is it written, with `input-next` and
   `changelog-next` of the last of them (when `p` goes idle, before a new batch if the last commit is done, and
   at least every `MAX_OPEN_BATCH_S` under load). A crash before that leaves the store behind Kafka; opening the
   partition replays the changelog from `changelog-next`, so the store catches up with exactly what was
   committed. A failed commit discards the write batch and stops the worker (a revoked partition's is discarded
   and the partition closed); whoever owns `p` next replays from the committed changelog and offsets.
5. The group's offsets are committed only inside those transactions (the consumer's auto-commit is off).

At-least-once: one idempotent producer, flushed after each batch's sends, then the group offset is committed, then
(step 4) the write batch is written. A crash re-delivers events since the last committed offset; those below
`input-next` are already in the store and skipped.

Rebalances: the listener's revocation takes the batch lock (no batch is being scored), awaits the revoked
partitions' commits, writes their stores and closes them with their producers; records already fetched for a
partition no longer assigned are dropped. On assignment it starts each partition's producer (fencing) and opens its
store (restoring from the changelog) before anything of that partition is scored.

Input isolation: the input is read `read_committed` in both modes, and a bounded run stops one past the last
record such a consumer sees (`pipelines.runtimes.faust.ends`), not at the high watermark, which a transactional
input's commit markers would keep out of reach.

Keys: state is kept per partition of the scored topic. An input with one partition is scored as it is; an input
with more partitions is repartitioned through an internal topic keyed by the pipeline's key
(`pipelines.runtimes.faust.routing`), unless the run declares it keyed (`--input-keyed`), so one key never has two
states whatever the producers keyed their records by.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from pipelines.kafka import security
from pipelines.registry import get
from pipelines.runtimes.faust.metrics import WorkerMetrics, serve_metrics
from pipelines.runtimes.faust.options import FaustOptions
from pipelines.runtimes.faust.routing import Router
from pipelines.runtimes.faust.runner import Runner

_LOG = logging.getLogger("streamscore.faust")

#: How long an idle fetch waits for records before the loop looks at its stop conditions again (ms).
IDLE_FETCH_MS = 200


class _Rebalance(ConsumerRebalanceListener):
    """Hands the consumer's revocations and assignments to the runner (the scored topic's partitions) and the
    router (the input's, when it is repartitioned); awaited before the group moves on."""

    def __init__(self, runner: Runner, router: Router | None) -> None:
        self._runner = runner
        self._router = router
        #: What an assignment raised: aiokafka logs and swallows a listener's exception (the worker would then
        #: fetch its unopened partitions forever), so `serve` re-raises it.
        self.failure: Exception | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        _LOG.warning("revoking %s", _names(revoked))
        if self._router is not None:
            await self._router.on_revoked(_of(revoked, self._router.options.input_topic))
        await self._runner.on_revoked(_of(revoked, self._runner.topic))
        _LOG.warning("revoked")

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        _LOG.warning("assigning %s", _names(assigned))
        try:
            if self._router is not None:
                await self._router.on_assigned(_of(assigned, self._router.options.input_topic))
            await self._runner.on_assigned(_of(assigned, self._runner.topic))
        except Exception as exc:  # kept for `serve` to raise (aiokafka would only log it, with a traceback)
            self.failure = exc


def _names(tps: set[TopicPartition]) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "nothing"


def _of(tps: set[TopicPartition], topic: str) -> list[int]:
    return [tp.partition for tp in tps if tp.topic == topic]


def _consumer(options: FaustOptions) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=options.bootstrap, group_id=options.group_id, enable_auto_commit=False,
        auto_offset_reset="earliest", isolation_level="read_committed",
        session_timeout_ms=int(options.session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, options.session_timeout_s / 3) * 1000),
        max_partition_fetch_bytes=4 << 20, **security.active().aiokafka(),
    )


async def _fetch(consumer: AIOKafkaConsumer, options: FaustOptions) -> dict[TopicPartition, list[Any]]:
    """What has been fetched, up to --batch-size records: at once if there is any, else the first records to
    arrive within `IDLE_FETCH_MS` (an empty dict if none did)."""
    batch: dict[TopicPartition, list[Any]] = await consumer.getmany(
        timeout_ms=IDLE_FETCH_MS, max_records=options.batch_size)
    return batch


async def serve(options: FaustOptions, runner: Runner, router_ends: dict[int, int] | None = None) -> None:
    """Run the worker until SIGINT/SIGTERM, or (bounded) until the input's end offsets are committed (when
    repartitioning: routed up to `router_ends`, then scored up to the repartition topic's end)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics_server = None
    if options.metrics_port is not None:
        runner.metrics.lag = runner.lag
        metrics_server = await serve_metrics(runner.metrics, options.metrics_port)
    await runner.start()
    router = None
    if options.repartition_topic is not None:
        router = Router(options, runner.spec, runner.producer_config(), runner.sender, runner.metrics)
        await router.start()
    consumer = _consumer(options)
    topics = [runner.topic] if router is None else [options.input_topic, runner.topic]
    listener = _Rebalance(runner, router)
    consumer.subscribe(topics, listener=listener)
    runner.consumer = consumer
    if router is not None:
        router.consumer = consumer
    await consumer.start()
    try:
        while not stop.is_set() and not runner.done.is_set():
            batch = await _fetch(consumer, options)
            if listener.failure is not None:
                raise listener.failure
            untaken: list[tuple[TopicPartition, int]] = []
            if router is not None:
                router.raise_failed()
                for tp in [tp for tp in batch if tp.topic == options.input_topic]:
                    records = batch.pop(tp)
                    if not await router.route(tp.partition, records):
                        untaken.append((tp, records[0].offset))
                if router_ends is not None and runner.ends is None and router.routed_all(router_ends):
                    scored = await asyncio.get_running_loop().run_in_executor(None, _stops, options, runner.topic)
                    _bound_scoring(runner, *scored)
            if batch:
                untaken += [(tp, batch[tp][0].offset) for tp in await runner.process(batch)]
            else:
                await runner.settle_idle()
            _fetch_again(consumer, untaken)
    finally:
        try:
            if router is not None:
                await router.stop()
            await runner.stop()
        finally:
            runner.consumer = None
            await consumer.stop()
            if metrics_server is not None:
                await metrics_server.cleanup()


def _fetch_again(consumer: AIOKafkaConsumer, untaken: list[tuple[TopicPartition, int]]) -> None:
    """Seek back to records fetched for a partition that was assigned but not open yet (aiokafka may fetch
    before the assignment listener has run): they are fetched again once it is. Records of a partition no
    longer assigned are left to its new owner."""
    if not untaken:
        return
    assigned = consumer.assignment()
    for tp, offset in untaken:
        if tp in assigned:
            consumer.seek(tp, offset)


def _stops(options: FaustOptions, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(the group's committed position, where a bounded run stops) per partition of `topic`."""
    from pipelines.kafka.clients import committed_offsets, end_offsets
    from pipelines.runtimes.faust.ends import stop_offsets

    ends = end_offsets(options.bootstrap, topic)
    committed = committed_offsets(options.bootstrap, options.group_id, topic, ends)
    position = {p: max(0, committed.get(p, -1)) for p in ends}
    return position, stop_offsets(options.bootstrap, topic, position, ends)


def _bound_scoring(runner: Runner, position: dict[int, int], stops: dict[int, int]) -> None:
    """Once the input is routed: score the repartition topic up to where it ends now (`_stops`)."""
    runner.position = {p: max(runner.position.get(p, 0), at) for p, at in position.items()}
    runner.ends = stops
    runner.check_done()


def run(options: FaustOptions) -> dict[str, int]:
    """Run the pipeline on the faust runtime (blocking); returns the counts of what it processed."""
    spec = get(options.pipeline)
    config = spec.load_config(options.config_path)
    runner = Runner(options, spec, config, WorkerMetrics(spec.name))
    router_ends = None
    if options.bounded:
        position, stops = _stops(options, options.input_topic)
        if options.repartition_topic is None:
            runner.position, runner.ends = position, stops
            runner.check_done()
        elif all(position.get(p, 0) >= end for p, end in stops.items()):
            _bound_scoring(runner, *_stops(options, runner.topic))
        else:
            router_ends = stops
    if runner.done.is_set():
        runner.operator.close()
        return runner.counts
    started = time.monotonic()
    asyncio.run(serve(options, runner, router_ends))
    _LOG.info("worker ran %.1f s", time.monotonic() - started)
    return runner.counts
