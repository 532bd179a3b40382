"""Rescaling on a real standalone cluster: the risk job stopped with a savepoint at parallelism 1 resumes at 2,
is stopped again and resumes at 1, with every key's state and version history intact (`state get` of sampled keys
before and after each rescale), exactly one result per event equal to the offline scorer's, and the operator
metrics scraped from both TaskManagers' Prometheus endpoints counting what the parallel job did."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from pipelines.infra import cluster
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.runtimes.offline import score_lines

from . import test_risk_job
from .conftest import Topics, streamscore
from .test_cluster_jobs import _count, _unstamped, two_taskmanagers  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

PHASE = 2_000
REST = "http://localhost:18281"
_OPERATOR = r"^flink_taskmanager_job_task_operator_{}\{{([^}}]*)\}} ([0-9.eE+-]+)$"
_SCORED = re.compile(_OPERATOR.format("events_scored"), re.MULTILINE)
_DEAD = re.compile(_OPERATOR.format("reason_dead_letters"), re.MULTILINE)


def _job(bootstrap: str, topics: Topics, changelog: str, checkpoints: Path, log: Path,
         *command: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, *command[:1], "risk", *command[1:],
        "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
        "--state-changelog", changelog, "--checkpoint-dir", str(checkpoints),
        "--target", "remote", "--jobmanager", "localhost:18281", "--attach",
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(bootstrap: str, topic: str, count: int, job: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while _count(bootstrap, topic) < count:
        assert job.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"fewer than {count} results: " + log.read_text()[-3000:]
        time.sleep(1)


def _stop_with_savepoint(job: subprocess.Popen[bytes], checkpoints: Path, log: Path) -> str:
    done = streamscore("savepoint", "risk", "--stop", "--checkpoint-dir", str(checkpoints), timeout=300)
    assert job.wait(120) == 0, log.read_text()[-4000:]
    path = done.stdout.strip().splitlines()[-1]
    assert Path(path, "_metadata").exists(), done.stdout + done.stderr
    return path


def _histories(bootstrap: str, changelog: str, state_dir: Path, keys: list[str]) -> dict[str, list[bytes]]:
    streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", changelog,
                "--state-dir", str(state_dir), "--timeout", "3")
    found = {}
    for key in keys:
        out = streamscore("state", "get", "risk", key, "--history", "1000", "--state-dir", str(state_dir))
        found[key] = sorted(out.stdout.encode().splitlines(), key=lambda line: msgspec.json.decode(line)["version"])
    return found


def _by_taskmanager(metric: re.Pattern[str]) -> list[Counter[str]]:
    """A counter's series summed per TaskManager endpoint, by their `reason` label ('' when none)."""
    totals = []
    for url in cluster.status().prometheus["taskmanager"]:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        found: Counter[str] = Counter()
        for labels, value in metric.findall(text):
            reason = re.search(r'reason="([^"]+)"', labels)
            found[reason.group(1) if reason else ""] += int(float(value))
        totals.append(found)
    return totals


@pytest.mark.slow  # three jobs and two savepoints on a 3-JVM cluster: `make test-slow`
def test_a_savepoint_at_parallelism_1_resumes_at_2_and_back_with_state_intact(
    bootstrap: str, tmp_path: Path, two_taskmanagers: None  # noqa: F811
) -> None:
    name = f"rescale-{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{name}.in", f"{name}.out", f"{name}.dlq")
    changelog = f"{name}.changelog"
    ensure_topics(bootstrap, [topics.input], partitions=2)
    ensure_topics(bootstrap, [topics.output, topics.dlq, changelog])
    events = synthetic_events("risk", 3 * PHASE, seed=57)
    expected = {
        msgspec.json.decode(encoded)["event_id"]: _unstamped(encoded)
        for encoded, letter in score_lines("risk", (msgspec.json.encode(e) for e in events), source="offline")
        if letter is None
    }
    per_key = Counter(str(e["account_id"]) for e in events)
    phases = [{str(e["account_id"]) for e in events[i * PHASE:(i + 1) * PHASE]} for i in range(3)]
    in_every_phase = [key for key, _ in per_key.most_common() if all(key in keys for keys in phases)]
    sampled = in_every_phase[:6]
    assert len(sampled) == 6

    def publish(phase: int) -> None:
        chunk = events[phase * PHASE:(phase + 1) * PHASE]
        publish_records(bootstrap, topics.input,
                        [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in chunk])

    checkpoints = tmp_path / "checkpoints"
    # Phase 1, parallelism 1; stop with a savepoint.
    publish(0)
    log = tmp_path / "p1.log"
    job = _job(bootstrap, topics, changelog, checkpoints, log, "run", "--parallelism", "1")
    _wait_for(bootstrap, topics.output, PHASE, job, log)
    first = _stop_with_savepoint(job, checkpoints, log)
    before = _histories(bootstrap, changelog, tmp_path / "state", sampled)

    # Phase 2: `run` resumes the newest savepoint under its checkpoint folder, now at parallelism 2.
    publish(1)
    publish_records(bootstrap, topics.input, [(None, raw) for raw, _ in test_risk_job.MALFORMED])
    log = tmp_path / "p2.log"
    job = _job(bootstrap, topics, changelog, checkpoints, log, "run", "--parallelism", "2")
    _wait_for(bootstrap, topics.output, 2 * PHASE, job, log)
    assert f"restoring {first}" in log.read_text()
    letters = len(test_risk_job.MALFORMED)
    deadline = time.monotonic() + 60
    while _count(bootstrap, topics.dlq) < letters and time.monotonic() < deadline:
        time.sleep(1)
    scored = [sum(c.values()) for c in _by_taskmanager(_SCORED)]
    assert len(scored) == 2 and all(n > 0 for n in scored), f"both TaskManagers score: {scored}"
    assert sum(scored) == PHASE, scored  # this job's counters: phase 2's events, once each
    dead = sum(_by_taskmanager(_DEAD), Counter())
    assert dead == Counter(reason for _, reason in test_risk_job.MALFORMED), dead
    second = _stop_with_savepoint(job, checkpoints, log)
    middle = _histories(bootstrap, changelog, tmp_path / "state", sampled)

    # Phase 3: back to parallelism 1, by replaying that savepoint.
    publish(2)
    log = tmp_path / "p3.log"
    job = _job(bootstrap, topics, changelog, checkpoints, log, "replay", "--from-savepoint", second,
               "--parallelism", "1")
    try:
        _wait_for(bootstrap, topics.output, 3 * PHASE, job, log)
        time.sleep(3)  # a duplicate would be committed by the next checkpoints
    finally:
        job.send_signal(signal.SIGTERM)
        job.wait(120)
    after = _histories(bootstrap, changelog, tmp_path / "state", sampled)

    for key in sampled:  # each rescale kept the key's versions and went on from them
        assert middle[key][:len(before[key])] == before[key], key
        assert after[key][:len(middle[key])] == middle[key], key
        assert len(before[key]) < len(middle[key]) < len(after[key]) == per_key[key], key
        assert [msgspec.json.decode(v)["version"] for v in after[key]] == list(range(1, per_key[key] + 1))
    results = [r.value for r in consume(bootstrap, topics.output, timeout_s=4)]
    ids = Counter(msgspec.json.decode(v)["event_id"] for v in results)
    assert len(ids) == 3 * PHASE and max(ids.values()) == 1, "lost or duplicated results"
    for value in results:
        assert _unstamped(value) == expected[msgspec.json.decode(value)["event_id"]]
