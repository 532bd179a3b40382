"""One input partition's state on the faust runtime: a `RocksVersionedStore`, rebuilt from the changelog.

Each assigned input partition `p` has its own store in `<state-dir>/<input topic>-<p>` and two runtime entries
written in the same RocksDB WriteBatch as the state they describe (`RocksVersionedStore.put_meta`):

- `input-next`: the next input offset whose event is not yet in the store;
- `changelog-next`: the next changelog offset (partition `p` of the changelog topic) not yet in the store.

The store is written only *after* the Kafka side of a batch (results, dead letters, changelog records, input
offsets) is committed, so it is never ahead of Kafka. It can be behind (a crash between the Kafka commit and the
RocksDB write, or a partition that another worker processed meanwhile); `open_partition` then replays partition `p`
of the changelog from `changelog-next` to its end (read_committed under exactly-once), skipping versions the store
already has, exactly like `streamscore state sync`. Changelog records name their source offset, so the replay
also moves `input-next` past every event whose state it restored: such an event is never applied twice.

A folder that is gone is rebuilt from the changelog (it opens empty). A damaged one (RocksDB's CURRENT, MANIFEST or
an SST file truncated, garbled or missing) is refused before anything is scored: `open_partition` opens the store
and reads every entry once (RocksDB verifies each block's checksum), and on failure raises `DamagedStateError`
naming the folder and the fix (move it aside; the next start rebuilds it from the changelog). Rebuilding is not
automatic: the damaged folder is evidence, and removing it is the operator's call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipelines.exceptions import ConfigError
from pipelines.kafka import security
from pipelines.kafka.changelog import ChangelogGapError, apply_record
from pipelines.runtimes.expiry import EventClock
from state.exceptions import StateStoreLockedError
from state.rocks import RocksVersionedStore

INPUT_NEXT = "input-next"
CHANGELOG_NEXT = "changelog-next"


@dataclass
class PartitionState:
    """The open store of one input partition and how far it is applied."""

    partition: int
    store: RocksVersionedStore[Any]
    #: Events at offsets below this are already in the store (skipped if the input delivers them again).
    input_next: int
    changelog_next: int
    #: Versions restored from the changelog when the partition was opened.
    restored: int = 0
    #: The partition's event clock (None: no `state.ttl_hours`, nothing is swept).
    clock: EventClock | None = None
    #: The last key the incremental sweep examined (None: start from the first).
    sweep_after: str | None = None

    def sweep(self, budget: int) -> list[str]:
        """Examine up to `budget` keys after the sweep cursor (wrapping around at the end of the store) and
        forget those the event clock says are to be swept (`pipelines.runtimes.expiry`); returns their keys.
        Inside the caller's write batch, like the state the batch wrote."""
        clock = self.clock
        if clock is None or clock.newest is None:
            return []
        heads = self.store.scan_heads(self.sweep_after, budget)
        self.sweep_after = heads[-1][0] if len(heads) == budget else None
        swept = [key for key, newest in heads if clock.due(newest)]
        for key in swept:
            self.store.forget(key)
        return swept

    def close(self) -> None:
        """Close the store (what it holds is committed; nothing pending is written)."""
        self.store.close()


def store_path(state_dir: Path, input_topic: str, partition: int) -> Path:
    """Where the store of `partition` of `input_topic` lives."""
    return state_dir / f"{input_topic}-{partition}"


def _int_meta(store: RocksVersionedStore[Any], name: str) -> int:
    raw = store.get_meta(name)
    return int(raw) if raw is not None else 0


async def open_partition(
    *, bootstrap: str, state_dir: Path, input_topic: str, changelog_topic: str, partition: int,
    codec: Any, retention: Any, read_committed: bool,
) -> PartitionState:
    """Open (creating if needed) the store of `partition` and bring it up to the changelog's committed end.

    Raises `DamagedStateError` when the store's folder exists but cannot be read in full."""
    store = _open_verified(store_path(state_dir, input_topic, partition), codec, retention, changelog_topic)
    try:
        state = PartitionState(partition, store, _int_meta(store, INPUT_NEXT), _int_meta(store, CHANGELOG_NEXT))
        await _restore(state, bootstrap, input_topic, changelog_topic, codec.value_type, read_committed)
    except BaseException:
        store.close()
        raise
    return state


class DamagedStateError(ConfigError):
    """A partition's state folder exists but RocksDB cannot read it in full: the worker stops before scoring."""


def _open_verified(path: Path, codec: Any, retention: Any, changelog_topic: str) -> RocksVersionedStore[Any]:
    store: RocksVersionedStore[Any] | None = None
    try:
        store = RocksVersionedStore(path, codec, retention=retention)
        store.verify()
    except StateStoreLockedError:
        raise
    except Exception as exc:  # StateError, or rocksdict's plain Exception from a read at open: re-raised, named
        if store is not None:
            store.close()
        raise DamagedStateError(
            f"the state in {path} cannot be read: {exc}. Nothing was scored from it. Move the folder aside (or "
            f"delete it) and start the worker again: it rebuilds the state from changelog {changelog_topic!r}"
        ) from exc
    return store


async def _restore(
    state: PartitionState, bootstrap: str, input_topic: str, changelog_topic: str, value_type: Any,
    read_committed: bool,
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **security.active().aiokafka(),
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    await consumer.start()
    try:
        tp = TopicPartition(changelog_topic, state.partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if state.changelog_next > end:
            raise ConfigError(
                f"the state in {state.store.path} has read changelog {changelog_topic!r} partition "
                f"{state.partition} up to offset {state.changelog_next}, but the topic ends at {end}: it was "
                "recreated or belongs to another deployment. Point --state-dir at an empty folder (the state is "
                "rebuilt from the changelog) or use the changelog this state came from"
            )
        consumer.seek(tp, state.changelog_next)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
            records = batch.get(tp, [])
            if not records:
                continue
            with state.store.write_batch():
                for message in records:
                    _apply(state, message.key, message.value, input_topic, changelog_topic, value_type)
                state.changelog_next = records[-1].offset + 1
                state.store.put_meta(CHANGELOG_NEXT, str(state.changelog_next).encode())
                state.store.put_meta(INPUT_NEXT, str(state.input_next).encode())
        if state.changelog_next < end:  # only transaction markers (or aborted records) after the last record
            state.changelog_next = end
            state.store.put_meta(CHANGELOG_NEXT, str(end).encode())
    finally:
        await consumer.stop()


def _apply(state: PartitionState, key: bytes | None, raw: bytes | None, input_topic: str, changelog_topic: str,
           value_type: Any) -> None:
    try:
        changed, source = apply_record(state.store, key, raw, value_type)
    except ChangelogGapError as exc:
        raise ConfigError(
            f"changelog {changelog_topic!r} partition {state.partition}: {exc}: the store in {state.store.path} "
            "does not belong to this changelog. Point --state-dir at an empty folder to rebuild it from the "
            "changelog"
        ) from None
    state.restored += changed
    if source is not None and source.topic == input_topic and source.partition == state.partition:
        state.input_next = max(state.input_next, source.offset + 1)
