"""`kafka up --brokers 3`: a local 3-node KRaft cluster whose topics (the project's and the internal ones) are
replicated 3 times with `min.insync.replicas` 2; acknowledged and committed writes survive the SIGKILL of a
partition's leader; `up` restarts only the killed node; `status` and `down` cover every node; a folder made for
one size refuses another."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from pipelines.exceptions import SetupError
from pipelines.infra import broker, kafka_cluster
from pipelines.kafka.clients import ensure_topics

from .conftest import CLUSTER_PORT as PORT

pytestmark = pytest.mark.integration


def _partition_leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """(leader, replicas, in-sync replicas) per partition of `topic`, once its metadata has reached the broker
    asked (a topic just created may take a moment)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 30
    while True:
        found = admin.list_topics(topic, timeout=10).topics[topic]
        partitions = {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in found.partitions.values()}
        if (partitions and all(leader >= 0 for leader, _, _ in partitions.values())) or time.monotonic() > deadline:
            return partitions
        time.sleep(0.2)


def _min_isr(bootstrap: str, topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return str(future.result(timeout=30)["min.insync.replicas"].value)


def _send(bootstrap: str, topic: str, keys: list[str]) -> None:
    """Produce `keys` (value = key) in one transaction; every one acknowledged (acks=all) and committed."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"cluster-test-{uuid.uuid4().hex[:8]}",
                         "message.timeout.ms": 60_000})
    producer.init_transactions(60)
    producer.begin_transaction()
    for key in keys:
        producer.produce(topic, key=key.encode(), value=key.encode())
    producer.commit_transaction(60)


def _read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cluster-test-{uuid.uuid4().hex[:8]}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: list[str] = []
    idle = 0
    try:
        while idle < 10 and len(seen) < expected + 1:
            batch = consumer.consume(500, timeout=1.0)
            idle = 0 if batch else idle + 1
            seen.extend(m.value().decode() for m in batch if m.error() is None)
        for _ in range(3):  # anything beyond `expected` (a doubled write) would show now
            seen.extend(m.value().decode() for m in consumer.consume(500, timeout=1.0) if m.error() is None)
    finally:
        consumer.close()
    return seen


def test_topics_are_replicated_three_times_with_two_in_sync(cluster: str) -> None:
    topic = f"cluster-{uuid.uuid4().hex[:8]}"
    ensure_topics(cluster, [topic], partitions=2)
    leaders = _partition_leaders(cluster, topic)
    assert sorted(leaders) == [0, 1]
    assert all(sorted(replicas) == [1, 2, 3] for _, replicas, _ in leaders.values())
    assert _min_isr(cluster, topic) == "2"
    _send(cluster, topic, ["a", "b"])  # creates the transaction state topic
    Consumer({"bootstrap.servers": cluster, "group.id": "rf-probe"}).close()
    for internal in ("__transaction_state", "__consumer_offsets"):
        partitions = _partition_leaders(cluster, internal)
        assert partitions and all(sorted(r) == [1, 2, 3] for _, r, _ in partitions.values()), internal
        assert _min_isr(cluster, internal) == "2", internal


def test_committed_writes_survive_a_leader_sigkill_and_up_restarts_only_that_node(cluster: str) -> None:
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    ensure_topics(cluster, [topic], partitions=2)
    before = [f"before-{i}" for i in range(2_000)]
    _send(cluster, topic, before)
    leader = _partition_leaders(cluster, topic)[0][0]
    pid = kafka_cluster.node_pid(PORT, leader)
    others = {n: kafka_cluster.node_pid(PORT, n) for n in (1, 2, 3) if n != leader}
    assert pid is not None and all(others.values())
    os.kill(pid, signal.SIGKILL)
    after = [f"after-{i}" for i in range(2_000)]
    _send(cluster, topic, after)  # two replicas left: min.insync.replicas is still met
    assert not broker.status(PORT).running
    got = _read_all(cluster, topic, 2, len(before) + len(after))
    assert sorted(got) == sorted(before + after)  # nothing lost, nothing doubled
    restarted = broker.up(PORT, brokers=3)
    assert restarted.running
    assert {n: kafka_cluster.node_pid(PORT, n) for n in others} == others  # the live nodes were left alone
    assert kafka_cluster.node_pid(PORT, leader) not in (None, pid)


def test_a_folder_refuses_another_size_and_the_cli_reports_every_node(cluster: str, tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"made for a cluster of 3, not 1.*--brokers 3"):
        broker.up(PORT)
    with pytest.raises(SetupError, match="single node"):
        broker.up(PORT, brokers=3, secure=broker.BrokerSecurity(tls=None))  # type: ignore[arg-type]
    status = broker.status(PORT)
    assert [n.port for n in status.nodes] == [PORT, PORT + 2, PORT + 4]
    assert status.bootstrap == cluster
