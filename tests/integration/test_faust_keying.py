"""The faust runtime on input not partitioned by the pipeline's key: records produced by a plain confluent-kafka
Producer without a key into a 2-partition topic are repartitioned by account, so each account has one state
(versions 1..n, none repeated) and each event one result, through a SIGKILL of the worker mid-run."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer

from operators.risk.schemas import RiskResult
from pipelines.kafka.clients import consume, ensure_topics
from pipelines.kafka.publishing import synthetic_events

from .conftest import Topics, streamscore
from .test_faust_runtime import _faust_args, _start, _wait_for

pytestmark = pytest.mark.integration


def _produce_without_keys(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """What an outside producer does: no key, so the client spreads the records over the partitions."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 200,
                         "sticky.partitioning.linger.ms": 1})
    for value in values:
        producer.produce(topic, value)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_unkeyed_input_is_repartitioned_one_state_per_account_through_a_sigkill(
    bootstrap: str, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"it-{run}.in", f"it-{run}.out", f"it-{run}.dlq")
    ensure_topics(bootstrap, [topics.input], partitions=2)
    ensure_topics(bootstrap, [topics.output, topics.dlq])
    events = synthetic_events("risk", 6_000, 67)
    values = [msgspec.json.encode(e) for e in events]
    _produce_without_keys(bootstrap, topics.input, [*values[:3_000], b"{not json", *values[3_000:]])
    split = {p for p, n in Counter(r.partition for r in consume(bootstrap, topics.input, timeout_s=4)).items() if n}
    assert split == {0, 1}, "the producer did not spread the records over both partitions"

    args = _faust_args(bootstrap, "risk", topics, tmp_path / "state", "--batch-size", "200")
    log = tmp_path / "worker.log"
    worker = _start(args, log)
    _wait_for(bootstrap, topics.output, 2_000, [worker], log)
    os.killpg(worker.pid, signal.SIGKILL)  # mid-run: routed but unscored records, open transactions
    worker.wait(30)
    time.sleep(0.5)
    finished = streamscore(*args, "--bounded")
    assert "repartitioned by key" in finished.stdout

    results = [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topics.output, timeout_s=4)]
    per_event = Counter(r.event_id for r in results)
    assert set(per_event) == {str(e["event_id"]) for e in events}
    assert max(per_event.values()) == 1, [k for k, v in per_event.items() if v > 1][:5]
    versions: dict[str, list[int]] = defaultdict(list)
    for result in results:
        versions[result.account_id].append(result.state_version)
    expected = Counter(str(e["account_id"]) for e in events)
    for account, seen in versions.items():
        assert sorted(seen) == list(range(1, expected[account] + 1)), account
    letters = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.dlq, timeout_s=3)]
    assert [(letter["reason"], letter["topic"], letter["raw"]) for letter in letters] == [
        ("invalid_json", topics.input, "{not json")]
