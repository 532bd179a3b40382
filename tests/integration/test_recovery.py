"""Resume and replay on the real broker and real PyFlink jobs: crashes lose and duplicate nothing, and
replaying from a checkpoint reproduces the first run byte for byte (scored_at aside)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from operators.contract import OperatorContext
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import RiskResult, Transaction
from pipelines.kafka.clients import consume, end_offsets, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.runtimes.flink.checkpoints import list_checkpoints
from state import MemoryVersionedStore

from .conftest import Topics, run_bounded, start_job, streamscore

pytestmark = pytest.mark.integration


def _results(bootstrap: str, topic: str) -> list[RiskResult]:
    return [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topic, timeout_s=4)]


def _publish(bootstrap: str, topic: str, events: list[dict[str, object]]) -> None:
    publish_records(bootstrap, topic, [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in events])


def _offline(events: list[dict[str, object]]) -> dict[str, RiskResult]:
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    out: dict[str, RiskResult] = {}
    for event in events:
        tx = msgspec.json.decode(msgspec.json.encode(event), type=Transaction)
        for result in operator.process(tx, store.key(tx.account_id), None):
            out[result.event_id] = result
    return out


def _wait_for_results(bootstrap: str, topic: str, at_least: int, job: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert job.poll() is None, f"job exited early:\n{log.read_text()[-3000:]}"
        # The output's end offsets (records written, committed or not, plus transaction markers): a cheap "about
        # here" for the kill. Reading the results back took seconds per poll at 100k+, long enough for a fast
        # job to finish its bounded input between two polls (seen 2026-12-04: 6k events/s).
        if sum(end_offsets(bootstrap, topic).values()) >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} results on {topic} after 180 s")


def _kill(job: subprocess.Popen[bytes], sig: int) -> None:
    os.killpg(job.pid, sig)
    job.wait(90)


def _same_as_offline(results: list[RiskResult], expected: dict[str, RiskResult]) -> None:
    counts = Counter(r.event_id for r in results)
    assert set(counts) == set(expected), (len(counts), len(expected))
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    for result in results:
        want = msgspec.structs.replace(expected[result.event_id], scored_at=result.scored_at)
        assert msgspec.json.encode(result) == msgspec.json.encode(want)


def _crash_and_resume(bootstrap: str, topics: Topics, tmp_path: Path, events: int, kills: int, seed: int) -> None:
    """All events are published first; a bounded job is SIGKILLed `kills` times at random moments, each time
    restarted (resuming from its newest retained checkpoint), then run to completion."""
    stream = synthetic_events("risk", events, seed)
    _publish(bootstrap, topics.input, stream)
    rng = random.Random(seed)
    checkpoints = tmp_path / "checkpoints"
    for round_number in range(kills):
        log = tmp_path / f"job-{round_number}.log"
        job = start_job(bootstrap, topics, checkpoints, log, "--bounded")
        target = rng.randint(events * (round_number + 1) // (kills + 2), events * (round_number + 2) // (kills + 2))
        _wait_for_results(bootstrap, topics.output, target, job, log)
        time.sleep(rng.uniform(0.0, 1.5))
        _kill(job, signal.SIGKILL)  # the whole process group: Python client and the mini-cluster JVM
        assert list_checkpoints(checkpoints), "the killed job left no retained checkpoint"
    run_bounded(bootstrap, topics, checkpoints)  # resumes from the newest retained checkpoint, then finishes
    _same_as_offline(_results(bootstrap, topics.output), _offline(stream))


def test_sigkilled_job_resumes_from_its_checkpoint_without_loss_or_duplicates(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    _crash_and_resume(bootstrap, topics, tmp_path, events=100_000, kills=1, seed=31)


@pytest.mark.slow
def test_crash_test_200k_events_three_kills(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    _crash_and_resume(bootstrap, topics, tmp_path, events=200_000, kills=3, seed=32)


def test_replay_from_checkpoint_reproduces_the_first_run(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    stream = synthetic_events("risk", 60_000, 41)
    _publish(bootstrap, topics.input, stream)
    checkpoints = tmp_path / "checkpoints"
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, checkpoints, log, "--bounded")
    _wait_for_results(bootstrap, topics.output, 10_000, job, log)
    _kill(job, signal.SIGKILL)
    listed = streamscore("checkpoints", "list", "risk", "--checkpoint-dir", str(checkpoints))
    assert "chk-" in listed.stdout
    killed_at = str(list_checkpoints(checkpoints)[-1].path)  # mid-run: the replay starts from here

    run_bounded(bootstrap, topics, checkpoints)  # the first run, completed from its checkpoint
    original = {r.event_id: r for r in _results(bootstrap, topics.output)}
    assert len(original) == len(stream)

    replayed_topic = topics.output + ".replay"
    streamscore("--bootstrap", bootstrap, "replay", "risk", "--from-checkpoint", killed_at, "--bounded",
                "--input-topic", topics.input, "--output-topic", replayed_topic, "--dlq-topic", topics.dlq + ".r",
                "--checkpoint-dir", str(checkpoints))
    replayed = _results(bootstrap, replayed_topic)
    assert replayed, "the replay produced nothing"
    assert {r.event_id for r in replayed} <= set(original)
    assert str(stream[-1]["event_id"]) in {r.event_id for r in replayed}
    assert len(replayed) < len(stream)  # it started from the checkpoint, not from the beginning
    for result in replayed:
        want = msgspec.structs.replace(original[result.event_id], scored_at=result.scored_at)
        assert msgspec.json.encode(result) == msgspec.json.encode(want)
