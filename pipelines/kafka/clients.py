"""confluent-kafka tooling: topic admin, publishing (synthetic or from a file) and read_committed consuming."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.exceptions import SetupError
from pipelines.kafka import security

_T = TypeVar("_T")

#: How long a command waits for the broker before it says it cannot reach it.
REACH_TIMEOUT_S = 5.0


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """The configuration of a confluent-kafka client of `bootstrap`: the process's security settings
    (`pipelines.kafka.security.active()`) plus `extra` (dots in option names as given, e.g. via a dict)."""
    return {"bootstrap.servers": bootstrap, **security.active().librdkafka(), **extra}


def _probe_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """A short-lived metadata/offset client's configuration: its failures surface as exceptions, so librdkafka's
    own error lines (e.g. a coordinator connection cut while the client closes) are not printed."""
    return client_config(bootstrap, log_level=2, **extra)


def check_reachable(bootstrap: str, timeout_s: float = REACH_TIMEOUT_S) -> set[str]:
    """The broker's topic names. `SetupError` naming the address tried if no broker answers in `timeout_s`,
    and at once if the broker refuses the credentials or the TLS handshake fails."""
    fatal: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            fatal.append(error)

    # log_level 0: librdkafka's own connection-refused lines would repeat what the error below says
    admin = AdminClient(client_config(bootstrap, log_level=0, error_cb=on_error))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return set(admin.list_topics(timeout=min(0.5, max(deadline - time.monotonic(), 0.01))).topics)
        except KafkaException as exc:
            admin.poll(0)  # serve error callbacks
            if fatal:
                raise SetupError(_refused(bootstrap, fatal[0])) from None
            if time.monotonic() >= deadline:
                settings = security.active()
                hint = "; if it requires TLS or SASL, pass --kafka-config FILE" if settings.protocol == "PLAINTEXT" \
                    else f"; client security: {settings.describe()}"
                raise SetupError(
                    f"cannot reach Kafka at {bootstrap} within {timeout_s:g} s ({exc.args[0].str()}); start the "
                    "project's broker with `streamscore kafka up`, or pass --bootstrap HOST:PORT "
                    f"(env STREAMSCORE_BOOTSTRAP){hint}"
                ) from None


def _refused(bootstrap: str, error: KafkaError) -> str:
    settings = security.active()
    what = "refused the credentials" if error.code() == KafkaError._AUTHENTICATION else "failed the TLS handshake"
    return (f"Kafka at {bootstrap} {what} ({security.redact(error.str())}); client security: {settings.describe()}. "
            "Check --kafka-config FILE / STREAMSCORE_KAFKA_* (user, password, CA file, protocol)")


def ensure_topics(bootstrap: str, topics: Iterable[str], *, partitions: int = 1) -> None:
    """Create the topics that do not exist yet (idempotent), replicated as the brokers' default says
    (`default.replication.factor`: 1 on the project's single broker, 3 on its cluster); `SetupError` if the broker
    cannot be reached."""
    existing = check_reachable(bootstrap)
    admin = AdminClient(client_config(bootstrap))
    wanted = [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in topics if t not in existing]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=10).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SetupError(f"creating topic {topic!r} on {bootstrap} failed: {exc}") from exc


def producer(bootstrap: str) -> Producer:
    """An idempotent producer (acks=all) for publishing events."""
    return Producer(
        client_config(bootstrap, **{"enable.idempotence": True, "linger.ms": 5, "compression.type": "lz4"})
    )


@dataclass
class PublishReport:
    """What a publish run did: records sent, keys used, seconds taken, and the send time of each event id."""

    sent: int = 0
    seconds: float = 0.0
    sent_at_ms: dict[str, int] | None = None


def publish_records(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    *,
    rate: float | None = None,
    track: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Send `(key, value)` records to `topic`, at most `rate` per second if given; wait until all are acked.
    `progress` is called with the count sent so far every 1,000 records."""
    prod = producer(bootstrap)
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    report = PublishReport(sent_at_ms={} if track is not None else None)
    ids = iter(track) if track is not None else None
    if track is not None:
        # Send times are measured: connect, fetch metadata and give the idempotent producer time to get its
        # producer id before the first send (a fresh producer held its first records ~0.3-0.5 s here).
        prod.list_topics(topic, timeout=10)
        prod.poll(1.0)
    start = time.monotonic()
    for i, (key, value) in enumerate(records):
        if progress is not None and i % 1_000 == 0:
            progress(i)
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                prod.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                prod.poll(0.05)
        if ids is not None and report.sent_at_ms is not None:
            report.sent_at_ms[next(ids)] = int(time.time() * 1000)
        prod.poll(0)
        report.sent += 1
    remaining = prod.flush(60)
    report.seconds = time.monotonic() - start
    if remaining or errors:
        raise SetupError(f"publishing to {topic!r}: {remaining} unsent, errors: {errors[:5]}")
    return report


def file_records(path: Path, key_field: str) -> Iterator[tuple[bytes | None, bytes]]:
    """Each line of a JSONL file as-is (malformed lines included), keyed by `key_field` when the line parses."""
    with path.open("rb") as f:
        for line in f:
            value = line.rstrip(b"\r\n")
            if not value:
                continue
            key: bytes | None = None
            try:
                parsed = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get(key_field), str):
                key = parsed[key_field].encode()
            yield key, value


@dataclass(frozen=True)
class ConsumedRecord:
    """A record read back from a topic, with its coordinates and timestamps."""

    key: bytes | None
    value: bytes
    partition: int
    offset: int
    timestamp_ms: int
    received_ms: int


def consume(
    bootstrap: str,
    topic: str,
    *,
    max_records: int | None = None,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
) -> Iterator[ConsumedRecord]:
    """Every committed record of `topic` from the beginning (read_committed), until `max_records`, no new
    record for `timeout_s` seconds, or `stop` is set. `SetupError` if the broker cannot be reached (instead of
    waiting `timeout_s` and yielding nothing, as if the topic were empty)."""
    check_reachable(bootstrap)
    consumer = Consumer(
        client_config(bootstrap, **{
            "group.id": f"streamscore-consume-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        })
    )
    consumer.subscribe([topic])
    count = 0
    last_new = time.monotonic()
    try:
        while (max_records is None or count < max_records) and not (stop is not None and stop.is_set()):
            msg = consumer.poll(0.2)
            if msg is None:
                if time.monotonic() - last_new > timeout_s:
                    return
                continue
            error = msg.error()
            if error is not None:
                if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise SetupError(f"consuming {topic!r}: {error}")
            last_new = time.monotonic()
            count += 1
            yield ConsumedRecord(
                msg.key(), msg.value() or b"", msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1],
                int(time.time() * 1000),
            )
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The current end offset (high watermark) of every partition of `topic`."""
    consumer = Consumer(_probe_config(bootstrap, **{"group.id": f"streamscore-probe-{uuid.uuid4().hex[:8]}"}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in metadata.partitions}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """The offsets consumer group `group` committed for `topic` (-1 where it committed none).

    Offsets sent inside a transaction that is still open (e.g. of a worker killed mid-transaction, until a new
    producer with its transactional id fences it or the transaction times out) are not counted: the last
    committed ones are returned at once. A read_committed client would ask for stable offsets only and wait,
    through its timeout, until that transaction ends."""
    consumer = Consumer(_probe_config(bootstrap, **{"group.id": group, "enable.auto.commit": False,
                                                    "isolation.level": "read_uncommitted"}))
    wanted = [TopicPartition(topic, p) for p in partitions]
    try:
        committed = retry_coordinator(lambda: consumer.committed(wanted, timeout=10))
        return {tp.partition: tp.offset if tp.offset >= 0 else -1 for tp in committed}
    finally:
        consumer.close()


#: Errors a group coordinator answers while it moves or loads its partition of `__consumer_offsets` (just after
#: a broker starts or restarts): the same request succeeds once it is done.
COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                KafkaError.COORDINATOR_NOT_AVAILABLE})


def retry_coordinator(call: Callable[[], _T], deadline_s: float = 30.0, pause_s: float = 0.5) -> _T:
    """`call()`, again after `pause_s` while it fails with one of `COORDINATOR_MOVING` (up to `deadline_s`); any
    other error, or the last one, is raised."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.code() not in COORDINATOR_MOVING or time.monotonic() + pause_s > give_up:
                raise
        time.sleep(pause_s)


def commit_group_offsets(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit `offsets` ({partition: next offset}) of `topic` for consumer group `group` (which must have no
    active members), e.g. to start a new group at chosen positions."""
    consumer = Consumer(_probe_config(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    wanted = [TopicPartition(topic, p, o) for p, o in offsets.items()]
    try:
        retry_coordinator(lambda: consumer.commit(offsets=wanted, asynchronous=False))
    finally:
        consumer.close()
