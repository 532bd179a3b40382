"""A broker restart in the middle of a run: the same `run` process recovers by itself and the committed output
still holds exactly one result per valid event, equal to the offline scorer's (and one dead letter per bad
record). The test runs its own broker (own port, own home folder) so the shared test broker is not touched."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from operators.risk.schemas import RiskResult
from pipelines.infra import broker
from pipelines.infra.home import home
from pipelines.infra.jars import FLINK_CONNECTORS, KAFKA_BROKER, ensure_jars
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events

from .conftest import Topics, start_job
from .test_recovery import _kill, _offline, _publish, _results, _same_as_offline, _wait_for_results

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~60 s each: `make test-slow` (make test stays ~20 min)

RESTART_PORT = int(os.environ.get("STREAMSCORE_RESTART_TEST_PORT", "19592"))
BAD_RECORDS = [b"{not json", b'{"event_id": "x"}', b"[1, 2, 3]", b"\xff\xfe"]


@pytest.fixture
def own_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A broker on RESTART_PORT with its data under tmp_path (jars shared with the usual home); stopped after."""
    jars = home() / "jars"
    ensure_jars(KAFKA_BROKER)
    ensure_jars(FLINK_CONNECTORS)
    own_home = tmp_path / "home"
    own_home.mkdir()
    (own_home / "jars").symlink_to(jars, target_is_directory=True)
    monkeypatch.setenv("STREAMSCORE_HOME", str(own_home))  # the job subprocess inherits it too
    try:
        yield broker.up(RESTART_PORT).bootstrap
    finally:
        broker.down(RESTART_PORT)


def _wait_for_all(bootstrap: str, topic: str, wanted: int, job: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        assert job.poll() is None, f"the job exited:\n{log.read_text()[-3000:]}"
        if len({r.event_id for r in _results_quick(bootstrap, topic)}) >= wanted:
            return
        time.sleep(2)
    raise AssertionError(f"fewer than {wanted} distinct results on {topic} after 900 s:\n{log.read_text()[-3000:]}")


def _results_quick(bootstrap: str, topic: str) -> list[RiskResult]:
    return [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topic, timeout_s=1)]


def test_running_job_recovers_unattended_from_a_broker_restart(own_broker: str, tmp_path: Path) -> None:
    bootstrap = own_broker
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"br-{run}.in", f"br-{run}.out", f"br-{run}.dlq")
    ensure_topics(bootstrap, [topics.input, topics.output, topics.dlq])
    stream = synthetic_events("risk", 36_000, 61)
    before, after = stream[:30_000], stream[30_000:]
    _publish(bootstrap, topics.input, before[:12_000])
    publish_records(bootstrap, topics.input, [(b"bad", value) for value in BAD_RECORDS[:2]])
    _publish(bootstrap, topics.input, before[12_000:])
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log)
    try:
        _wait_for_results(bootstrap, topics.output, 3_000, job, log)
        broker.down(RESTART_PORT)  # mid-run: the job still has most of `before` to score
        time.sleep(8)
        assert job.poll() is None, f"the job died with the broker:\n{log.read_text()[-3000:]}"
        broker.up(RESTART_PORT)
        _publish(bootstrap, topics.input, after[:3_000])
        publish_records(bootstrap, topics.input, [(b"bad", value) for value in BAD_RECORDS[2:]])
        _publish(bootstrap, topics.input, after[3_000:])
        _wait_for_all(bootstrap, topics.output, len(stream), job, log)
        # one more checkpoint cycle and consumer read after the last result, so late duplicates would show
        time.sleep(3)
        _same_as_offline(_results(bootstrap, topics.output), _offline(stream))
        letters = list(consume(bootstrap, topics.dlq, timeout_s=4))
        assert len(letters) == len(BAD_RECORDS), [r.value[:200] for r in letters]
    finally:
        if job.poll() is None:
            _kill(job, signal.SIGTERM)
