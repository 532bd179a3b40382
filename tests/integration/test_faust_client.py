"""faust-streaming's Kafka client (aiokafka) against the project's broker (Kafka 4.1, KRaft): transactions
(committed visible, aborted not, to read_committed), consumer offsets committed inside a transaction,
a consumer-group rebalance, and a faust worker in `exactly_once` mode end to end (issue 11, item 4)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from pipelines.kafka.clients import commit_group_offsets, committed_offsets, ensure_topics

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _committed_values(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                values.append(message.value())
        end = time.monotonic() + 1.5  # nothing more (no duplicate, nothing aborted) arrives
        while time.monotonic() < end:
            message = consumer.poll(0.3)
            if message is not None and not message.error():
                values.append(message.value())
    finally:
        consumer.close()
    return values


def test_aiokafka_transactions_offsets_and_rebalance(bootstrap: str) -> None:
    topic = f"faust-probe-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=2)
    group = f"g-{topic}"

    async def scenario() -> tuple[list[bytes], list[int | None], list[set[int]]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"t-{topic}")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(10):
                    await producer.send(topic, f"c{i}".encode(), partition=i % 2)
            await producer.begin_transaction()
            for i in range(5):
                await producer.send(topic, f"aborted{i}".encode(), partition=0)
            await producer.abort_transaction()
            async with producer.transaction():  # consume-transform-produce: offsets in the transaction
                await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 5},
                                                           group)
        finally:
            await producer.stop()
        reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"r-{topic}",
                                  isolation_level="read_committed", auto_offset_reset="earliest")
        await reader.start()
        seen: list[bytes] = []
        try:
            deadline = time.monotonic() + 20
            while len(seen) < 10 and time.monotonic() < deadline:
                for messages in (await reader.getmany(timeout_ms=500)).values():
                    seen += [m.value for m in messages]
        finally:
            await reader.stop()
        checker = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await checker.start()
        committed = [await checker.committed(TopicPartition(topic, p)) for p in (0, 1)]
        await checker.stop()
        first = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"rb-{topic}")
        await first.start()
        await first.getmany(timeout_ms=2000)
        alone = set(p.partition for p in first.assignment())
        second = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"rb-{topic}")
        await second.start()
        shared: list[set[int]] = [alone]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.gather(first.getmany(timeout_ms=300), second.getmany(timeout_ms=300))
            a, b = {p.partition for p in first.assignment()}, {p.partition for p in second.assignment()}
            if a and b:
                shared += [a, b]
                break
        await second.stop()
        await first.stop()
        return seen, committed, shared

    seen, committed, assignments = asyncio.run(scenario())
    assert sorted(seen) == sorted(f"c{i}".encode() for i in range(10))  # no aborted record is visible
    assert committed == [5, 5]
    assert assignments[0] == {0, 1} and len(assignments) == 3 and assignments[1] | assignments[2] == {0, 1}
    assert not assignments[1] & assignments[2]  # the rebalance split the partitions


def test_committed_offsets_answer_at_once_while_a_killed_workers_transaction_is_still_open(bootstrap: str) -> None:
    """A bounded run's first step after a SIGKILL: the killed worker's transaction (offsets sent to it, never
    committed) stays open until fenced or timed out. The probe must return the last committed offsets, not wait
    for that transaction through its timeout (make test-slow failed once so)."""
    topic = f"unstable-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    ensure_topics(bootstrap, [topic], partitions=1)
    commit_group_offsets(bootstrap, group, topic, {0: 3})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{topic}"})
    producer.init_transactions()
    producer.begin_transaction()
    producer.produce(topic, b"in flight")
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        producer.send_offsets_to_transaction([KafkaPartition(topic, 0, 7)], member.consumer_group_metadata())
    finally:
        member.close()
    producer.flush()
    started = time.monotonic()
    assert committed_offsets(bootstrap, group, topic, [0]) == {0: 3}
    assert time.monotonic() - started < 5
    producer.abort_transaction()
    assert committed_offsets(bootstrap, group, topic, [0]) == {0: 3}


def test_a_faust_worker_in_exactly_once_mode_round_trips(bootstrap: str, tmp_path: Path) -> None:
    topic = f"faust-app-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic, f"{topic}.out"], partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(50):
        producer.produce(topic, f"v{i}".encode(), partition=i % 2)
    producer.flush()
    env = os.environ | {"PROBE_TOPIC": topic, "PROBE_BOOTSTRAP": bootstrap,
                        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "tests.integration.faust_probe_app", "--datadir",
             str(tmp_path / "faust"), "worker", "-l", "warn"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        values = _committed_values(bootstrap, f"{topic}.out", 50, timeout_s=90)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    assert sorted(values) == sorted(f"V{i}".encode() for i in range(50)), (tmp_path / "worker.log").read_text()[-3000:]
