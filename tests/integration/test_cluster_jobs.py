"""The risk job on a real standalone Flink cluster (`cluster up` + `run --target remote`): parallelism 2 over two
TaskManagers on a 2-partition topic, one TaskManager SIGKILLed mid-run and started again; the job recovers from
its checkpoint and the read_committed output holds exactly one result per event, each the offline scorer's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from pipelines.infra import cluster
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.runtimes.offline import score_lines

from .conftest import Topics, start_job, streamscore

pytestmark = pytest.mark.integration

EVENTS = 12_000
PORTS = ("--rest-port", "18281", "--rpc-port", "16323", "--prometheus-ports", "19360-19369")
SHAPE = ("--taskmanagers", "2", "--slots", "1", "--taskmanager-memory", "1536m", *PORTS)


@pytest.fixture
def two_taskmanagers() -> Iterator[None]:
    streamscore("cluster", "up", *SHAPE, timeout=240)
    try:
        yield
    finally:
        streamscore("cluster", "down", timeout=120)


def _count(bootstrap: str, topic: str) -> int:
    return sum(1 for _ in consume(bootstrap, topic, timeout_s=1))


def _unstamped(value: bytes) -> bytes:
    decoded = msgspec.json.decode(value)
    decoded["scored_at"] = 0
    return msgspec.json.encode(decoded)


@pytest.mark.slow  # three JVMs plus a kill and a restart: `make test-slow`
def test_risk_job_on_two_taskmanagers_survives_losing_one(
    bootstrap: str, tmp_path: Path, two_taskmanagers: None
) -> None:
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{name}.in", f"{name}.out", f"{name}.dlq")
    ensure_topics(bootstrap, [topics.input], partitions=2)
    ensure_topics(bootstrap, [topics.output, topics.dlq])
    events = synthetic_events("risk", EVENTS, seed=91)
    publish_records(bootstrap, topics.input,
                    [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in events])
    expected = {
        msgspec.json.decode(encoded)["event_id"]: _unstamped(encoded)
        for encoded, letter in score_lines("risk", (msgspec.json.encode(e) for e in events), source="offline")
        if letter is None
    }
    assert len(expected) == EVENTS

    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log, "--target", "remote", "--jobmanager",
                    "localhost:18281", "--attach", "--parallelism", "2", "--checkpoint-interval", "1000")
    try:
        deadline = time.monotonic() + 300
        while _count(bootstrap, topics.output) < EVENTS // 6:
            assert job.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "too few results before the kill: " + log.read_text()[-2000:]
            time.sleep(0.5)
        victims = cluster.taskmanager_pids()
        assert len(victims) == 2
        os.kill(victims[0], signal.SIGKILL)
        time.sleep(2)
        assert len(cluster.taskmanager_pids()) == 1
        streamscore("cluster", "up", *SHAPE, timeout=240)  # starts the missing TaskManager
        assert len(cluster.taskmanager_pids()) == 2
        while _count(bootstrap, topics.output) < EVENTS:
            assert job.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline + 300, "the job did not recover: " + log.read_text()[-2000:]
            time.sleep(1)
        time.sleep(3)  # anything duplicated would be committed by the next checkpoints
    finally:
        job.send_signal(signal.SIGTERM)  # an attached run cancels its job on the cluster
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            job.kill()

    results = [r.value for r in consume(bootstrap, topics.output, timeout_s=4)]
    ids = Counter(msgspec.json.decode(v)["event_id"] for v in results)
    assert len(ids) == EVENTS and max(ids.values()) == 1, "lost or duplicated results"
    for value in results:
        assert _unstamped(value) == expected[msgspec.json.decode(value)["event_id"]]
    assert cluster.status().jobs_running == 0
