"""Sweeping expired keys in real jobs (`state.ttl_hours`): a key that stops receiving events while its subtask's
event time moves on more than two TTLs is removed from the job's state (a tombstone on the state changelog),
the keys still active are not, and when the swept key comes back it scores exactly as the offline scorer
(which only expires lazily) says: version 1 of a new lifetime. Flink (processing-time timers, an unbounded
job) and faust (the incremental sweep of a bounded run) alike; the changelog, synced into a store, holds
only the new lifetime of the swept key."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import msgspec
import pytest

from pipelines.kafka.changelog import ChangelogVersion, versions_of
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.risk.config import RISK_CONFIG_PATH
from pipelines.runtimes.offline import score_lines

from .conftest import Topics, start_job, streamscore
from .test_recovery import _kill

pytestmark = pytest.mark.integration

MINUTE = 60_000
T0 = 1_767_225_600_000
IDLE = "acct-idle"


def _tx(i: int, ts: int, account: str) -> bytes:
    return msgspec.json.encode({
        "event_id": f"{account}-{i}", "account_id": account, "amount": 10.0 + i % 50, "currency": "EUR",
        "merchant_id": f"m-{i % 9}", "country": "DE", "device_id": "d-1", "ts": ts,
    })


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "risk.yaml"
    config.write_text(RISK_CONFIG_PATH.read_text() + "  ttl_hours: 1\n  sweep_check_seconds: 1\n")
    return config


def _backlog() -> tuple[list[bytes], bytes]:
    """The idle account's 3 events at T0, then 20 accounts every minute for 3 h 20 min (each every 20 min),
    and the idle account's return at T0 + 3 h 30 min (published later)."""
    lines = [_tx(i, T0 + i * MINUTE, IDLE) for i in range(3)]
    lines += [_tx(i, T0 + (3 + i) * MINUTE, f"acct-{i % 20}") for i in range(200)]
    return lines, _tx(9, T0 + 210 * MINUTE, IDLE)


def _publish(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    publish_records(bootstrap, topic, [(msgspec.json.decode(line)["account_id"].encode(), line) for line in lines])


def _changelog(bootstrap: str, topic: str) -> list[tuple[str, ChangelogVersion | None]]:
    """(key, version) of the changelog's version records and (key, None) of its tombstones, in order."""
    found: list[tuple[str, ChangelogVersion | None]] = []
    for r in consume(bootstrap, topic, timeout_s=3):
        key = (r.key or b"").decode()
        if not r.value:
            found.append((key, None))
        else:
            found.extend((key, version) for version in versions_of(iter([(r.key, r.value)])))
    return found


def _unstamped(value: bytes) -> dict[str, object]:
    return {k: v for k, v in msgspec.json.decode(value).items() if k != "scored_at"}


def _check(bootstrap: str, topics: Topics, changelog: str, lines: list[bytes], config: Path) -> None:
    records = _changelog(bootstrap, changelog)
    tombstones = [key for key, record in records if record is None]
    assert tombstones == [IDLE], tombstones  # the active accounts (newest event < 20 min old) are kept
    idle = [(None if r is None else r.version) for key, r in records if key == IDLE]
    assert idle == [1, 2, 3, None, 1]  # three versions, swept, a new lifetime
    results = [r.value for r in consume(bootstrap, topics.output, timeout_s=3)]
    expected = [_unstamped(v) for v, letter in score_lines("risk", iter(lines), source="t", config=config)
                if letter is None]
    assert sorted(map(str, map(_unstamped, results))) == sorted(map(str, expected))
    back = next(_unstamped(v) for v in results if msgspec.json.decode(v)["event_id"] == f"{IDLE}-9")
    assert back["state_version"] == 1


def _wait_for(bootstrap: str, topic: str, predicate: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate(_changelog(bootstrap, topic)):  # type: ignore[operator]
            return
        time.sleep(1)
    raise AssertionError(f"no {what} on {topic} after {timeout_s:.0f} s")


def test_the_flink_job_sweeps_an_idle_key_and_it_returns_as_new(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    changelog = topics.output + ".changelog"
    ensure_topics(bootstrap, [changelog])
    lines, back = _backlog()
    _publish(bootstrap, topics.input, lines)
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log, "--config", str(config),
                    "--state-changelog", changelog, "--delivery", "at-least-once")
    try:
        _wait_for(bootstrap, changelog, lambda rs: any(k == IDLE and r is None for k, r in rs), "tombstone")
        _publish(bootstrap, topics.input, [back])
        _wait_for(bootstrap, changelog, lambda rs: [r.version for k, r in rs if k == IDLE and r][-1:] == [1]
                  and sum(1 for k, r in rs if k == IDLE and r) == 4, "new lifetime")
    finally:
        _kill(job, signal.SIGTERM)
    _check(bootstrap, topics, changelog, [*lines, back], config)


def test_the_faust_worker_sweeps_an_idle_key_incrementally(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    config = _config(tmp_path)
    changelog = topics.output + ".changelog"
    lines, back = _backlog()
    _publish(bootstrap, topics.input, [*lines, back])
    streamscore("--bootstrap", bootstrap, "run", "risk", "--runtime", "faust", "--bounded", "--config", str(config),
                "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--state-changelog", changelog, "--state-dir", str(tmp_path / "state"), "--batch-size", "50")
    _check(bootstrap, topics, changelog, [*lines, back], config)
    # the changelog, materialised, holds the swept key's new lifetime only
    synced = tmp_path / "synced"
    streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", changelog,
                "--state-dir", str(synced), "--timeout", "3")
    history = streamscore("state", "get", "risk", IDLE, "--history", "10", "--state-dir", str(synced)).stdout
    versions = [msgspec.json.decode(line)["version"] for line in history.splitlines() if line.startswith("{")]
    assert versions == [1], history
