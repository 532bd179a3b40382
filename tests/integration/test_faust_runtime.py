"""The faust runtime on the real broker: the same bytes as the Flink job, exactly once through SIGKILLs, and a
partition taken over by a second worker without loss or duplicates."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from operators.contract import OperatorContext
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import RiskResult, Transaction
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events
from state import MemoryVersionedStore

from . import test_reco_job, test_risk_job
from .conftest import Topics, streamscore

pytestmark = pytest.mark.integration


def _faust_args(bootstrap: str, pipeline: str, topics: Topics, state_dir: Path, *extra: str) -> list[str]:
    return ["--bootstrap", bootstrap, "run", pipeline, "--runtime", "faust", "--input-topic", topics.input,
            "--output-topic", topics.output, "--dlq-topic", topics.dlq, "--state-dir", str(state_dir), *extra]


def _records(bootstrap: str, topic: str) -> list[Any]:
    return list(consume(bootstrap, topic, timeout_s=4))


def _without_scored_at(value: bytes) -> dict[str, Any]:
    decoded = msgspec.json.decode(value)
    decoded.pop("scored_at")
    return decoded


def _letters(bootstrap: str, topic: str) -> list[tuple[str, int, str]]:
    letters = [msgspec.json.decode(r.value) for r in _records(bootstrap, topic)]
    return sorted((letter["reason"], letter["offset"], letter["raw"]) for letter in letters)


_SCORED_AT = re.compile(rb',"scored_at":[0-9]+')


def _assert_same_outputs(bootstrap: str, flink: Topics, faust: Topics) -> int:
    """Results equal byte for byte apart from scored_at (same field order, same values), as many of each event id
    on both sides (one lost plus one doubled cannot pass), dead letters equal."""
    expected = [r.value for r in _records(bootstrap, flink.output)]
    got = [r.value for r in _records(bootstrap, faust.output)]

    def per_event(values: list[bytes]) -> Counter[str]:
        return Counter(msgspec.json.decode(v)["event_id"] for v in values)

    assert per_event(got) == per_event(expected)
    assert sorted(_SCORED_AT.sub(b"", v) for v in got) == sorted(_SCORED_AT.sub(b"", v) for v in expected)
    assert _letters(bootstrap, faust.dlq) == _letters(bootstrap, flink.dlq)
    return len(got)


def _twin(topics: Topics) -> Topics:
    return Topics(topics.input, topics.output + ".faust", topics.dlq + ".faust")


def test_faust_and_flink_produce_the_same_risk_results_and_dead_letters(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    test_risk_job._publish(bootstrap, topics, tmp_path, events=20_000, seed=41)
    streamscore("--bootstrap", bootstrap, "run", "risk", "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--checkpoint-dir", str(tmp_path / "checkpoints"))
    twin = _twin(topics)
    streamscore(*_faust_args(bootstrap, "risk", twin, tmp_path / "faust", "--bounded"))
    assert _assert_same_outputs(bootstrap, topics, twin) == 20_000
    assert len(_letters(bootstrap, twin.dlq)) == len(test_risk_job.MALFORMED)


def _publish_transactions(bootstrap: str, topic: str, batches: list[tuple[list[dict[str, Any]], bool]]) -> None:
    """Publish each batch of events in its own transaction, committed or aborted."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"upstream-{topic}"})
    producer.init_transactions(10)
    for events, commit in batches:
        producer.begin_transaction()
        for event in events:
            producer.produce(topic, msgspec.json.encode(event), str(event["account_id"]).encode())
        producer.flush(10)
        if commit:
            producer.commit_transaction(10)
        else:
            producer.abort_transaction(10)


def test_a_transactional_input_is_read_committed_and_a_bounded_run_ends_past_its_markers(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Input written by a transactional producer (another job, say), one transaction aborted: neither runtime
    scores the aborted events, and both bounded runs end although the last offsets are commit markers."""
    events = synthetic_events("risk", 900, seed=45)
    _publish_transactions(bootstrap, topics.input, [(events[:300], True), (events[300:600], False),
                                                    (events[600:], True)])
    streamscore("--bootstrap", bootstrap, "run", "risk", "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--checkpoint-dir", str(tmp_path / "checkpoints"), timeout=300)
    twin = _twin(topics)
    for delivery in ("exactly-once", "at-least-once"):
        out = Topics(topics.input, f"{twin.output}.{delivery}", f"{twin.dlq}.{delivery}")
        streamscore(*_faust_args(bootstrap, "risk", out, tmp_path / delivery, "--bounded", "--delivery", delivery),
                    timeout=120)
        assert _assert_same_outputs(bootstrap, topics, out) == 600
    scored = {msgspec.json.decode(r.value)["event_id"] for r in _records(bootstrap, twin.output + ".exactly-once")}
    assert scored == {e["event_id"] for e in events[:300] + events[600:]}


def test_faust_and_flink_produce_the_same_reco_results_and_dead_letters(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", "10000", "--seed", "43",
                "--topic", topics.input)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(raw for raw, _ in test_reco_job.MALFORMED) + b"\n")
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--file", str(bad), "--topic", topics.input)
    streamscore("--bootstrap", bootstrap, "run", "reco", "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--checkpoint-dir", str(tmp_path / "checkpoints"))
    twin = _twin(topics)
    streamscore(*_faust_args(bootstrap, "reco", twin, tmp_path / "faust", "--bounded", "--batch-size", "64"))
    assert _assert_same_outputs(bootstrap, topics, twin) == 10_000


# ------------------------------------------------------------------------------------------------ crashes
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


def _assert_exactly_offline(bootstrap: str, topic: str, events: list[dict[str, object]]) -> None:
    expected = _offline(events)
    results = [msgspec.json.decode(r.value, type=RiskResult) for r in _records(bootstrap, topic)]
    counts = Counter(r.event_id for r in results)
    assert set(counts) == set(expected), (len(counts), len(expected))
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    for result in results:
        want = msgspec.structs.replace(expected[result.event_id], scored_at=result.scored_at)
        assert msgspec.json.encode(result) == msgspec.json.encode(want)


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "pipelines", *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(bootstrap: str, topic: str, at_least: int, workers: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.poll() is None, f"worker exited early:\n{log.read_text()[-3000:]}"
        if sum(1 for _ in consume(bootstrap, topic, timeout_s=0.5)) >= at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {at_least} results on {topic} after 180 s:\n{log.read_text()[-3000:]}")


def _publish(bootstrap: str, topic: str, events: list[dict[str, object]]) -> None:
    publish_records(bootstrap, topic, [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in events])


@pytest.mark.slow  # a multi-kill run over 100k events: `make test-slow`
def test_faust_worker_sigkilled_twice_loses_and_duplicates_nothing(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 100_000, 47)
    _publish(bootstrap, topics.input, events)
    rng = random.Random(47)
    args = _faust_args(bootstrap, "risk", topics, tmp_path / "state", "--bounded")
    for round_number in range(2):
        log = tmp_path / f"worker-{round_number}.log"
        worker = _start(args, log)
        _wait_for(bootstrap, topics.output, 30_000 * (round_number + 1), [worker], log)
        time.sleep(rng.uniform(0.0, 1.0))
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
    streamscore(*args)  # restarts from the committed offsets and the restored state, then finishes
    _assert_exactly_offline(bootstrap, topics.output, events)


def test_second_faust_worker_takes_over_a_killed_workers_partitions(
    bootstrap: str, tmp_path: Path
) -> None:
    run = os.urandom(4).hex()
    topics = Topics(f"it-{run}.in", f"it-{run}.out", f"it-{run}.dlq")
    ensure_topics(bootstrap, [topics.input], partitions=2)
    ensure_topics(bootstrap, [topics.output, topics.dlq])
    events = synthetic_events("risk", 40_000, 53)
    _publish(bootstrap, topics.input, events[:20_000])
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # a starts alone and owns state before b joins (a worker can score all 20k before a simultaneous peer has
    # joined, and then there is nothing to take over); b joins mid-run, then a is killed.
    workers = [_start(_faust_args(bootstrap, "risk", topics, tmp_path / "state-a", "--batch-size", "200"), logs[0])]
    _wait_for(bootstrap, topics.output, 1, workers, logs[0])
    workers.append(_start(_faust_args(bootstrap, "risk", topics, tmp_path / "state-b", "--batch-size", "200"), logs[1]))
    _wait_for(bootstrap, topics.output, 10_000, workers, logs[0])
    deadline = time.monotonic() + 60
    while "versions restored" not in logs[1].read_text():  # b has joined the group and opened its partitions
        assert time.monotonic() < deadline, logs[1].read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(workers[0].pid, signal.SIGKILL)  # mid-run: its partitions move to worker b
    workers[0].wait(30)
    _publish(bootstrap, topics.input, events[20_000:])
    try:
        deadline = time.monotonic() + 180
        while sum(1 for _ in consume(bootstrap, topics.output, timeout_s=0.5)) < len(events):
            assert workers[1].poll() is None, logs[1].read_text()[-3000:]
            assert time.monotonic() < deadline, logs[1].read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # anything duplicated would be visible by now
    finally:
        os.killpg(workers[1].pid, signal.SIGTERM)
        workers[1].wait(60)
    restored = [int(n) for n in re.findall(r"assigned: (\d+) versions restored", logs[1].read_text())]
    assert max(restored) > 0, "worker b never rebuilt a partition's state from the changelog"
    _assert_exactly_offline(bootstrap, topics.output, events)


def test_lost_faust_state_is_rebuilt_from_its_changelog_and_readable_with_state_get(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 5_000, 59)
    _publish(bootstrap, topics.input, events[:3_000])
    state_dir = tmp_path / "state"
    args = _faust_args(bootstrap, "risk", topics, state_dir, "--bounded", "--state-changelog", topics.input + ".cl")
    streamscore(*args)
    shutil.rmtree(state_dir)  # the machine's disk is gone: the next worker starts from the changelog
    _publish(bootstrap, topics.input, events[3_000:])
    second = streamscore(*args)
    restored = [int(n) for n in re.findall(r"assigned: (\d+) versions restored", second.stdout + second.stderr)]
    assert restored and restored[0] > 0
    _assert_exactly_offline(bootstrap, topics.output, events)

    # The same state, read through `state sync` of the changelog and straight from the partition's store.
    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    for event in events:
        tx = msgspec.json.decode(msgspec.json.encode(event), type=Transaction)
        operator.process(tx, store.key(tx.account_id), None)
    synced = tmp_path / "synced"
    streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", topics.input + ".cl",
                "--state-dir", str(synced), "--timeout", "3")
    for account in sorted({str(e["account_id"]) for e in events})[:20]:
        want = store.get(account)
        assert want is not None
        for folder in (synced, state_dir / f"{topics.input}-0"):
            got = msgspec.json.decode(streamscore("state", "get", "risk", account, "--state-dir", str(folder)).stdout)
            assert got["version"] == want.version and got["event_time"] == want.event_time
            assert got["value"] == msgspec.to_builtins(want.value)


def test_faust_replay_from_offsets_starts_fresh_there_and_refuses_checkpoints(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 2_000, 61)
    _publish(bootstrap, topics.input, events)
    replayed = Topics(topics.input, topics.output + ".replay", topics.dlq + ".replay")
    streamscore("--bootstrap", bootstrap, "replay", "risk", "--runtime", "faust", "--bounded",
                "--from-offsets", "partition:0,offset:1200", "--input-topic", topics.input,
                "--output-topic", replayed.output, "--dlq-topic", replayed.dlq, "--state-dir", str(tmp_path / "s"))
    _assert_exactly_offline(bootstrap, replayed.output, events[1200:])  # fresh state from offset 1200 on

    refused = subprocess.run(
        [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "replay", "risk", "--runtime", "faust",
         "--from-checkpoint", "latest", "--input-topic", topics.input, "--output-topic", replayed.output,
         "--dlq-topic", replayed.dlq], capture_output=True, text=True, timeout=120, check=False,
    )
    assert refused.returncode != 0 and "keeps no checkpoints" in refused.stderr
    assert "Traceback" not in refused.stderr
