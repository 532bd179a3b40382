"""`streamscore savepoint` on a real running job: a savepoint while it runs, then stop-with-savepoint, then a
restore from the stop savepoint continues the stream with exactly one result per event, each equal to the
offline scorer's (scored_at aside)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pipelines.kafka.publishing import synthetic_events

from .conftest import Topics, start_job, streamscore
from .test_recovery import _kill, _offline, _publish, _results, _same_as_offline, _wait_for_results

pytestmark = pytest.mark.integration


def _savepoint(bootstrap: str, checkpoints: Path, *extra: str) -> Path:
    """Run `streamscore savepoint risk` for the job using `checkpoints`; the path it printed last."""
    proc = streamscore("--bootstrap", bootstrap, "savepoint", "risk", "--checkpoint-dir", str(checkpoints), *extra)
    return Path(proc.stdout.strip().splitlines()[-1])


def test_savepoint_and_stop_with_savepoint_then_restore_continues_exactly_once(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    stream = synthetic_events("risk", 15_000, 51)
    first_part, second_part, third_part = stream[:6_000], stream[6_000:10_500], stream[10_500:]
    _publish(bootstrap, topics.input, first_part)
    checkpoints = tmp_path / "checkpoints"
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, checkpoints, log)
    try:
        _wait_for_results(bootstrap, topics.output, 2_000, job, log)
        running = _savepoint(bootstrap, checkpoints)
        assert (running / "_metadata").is_file()
        assert running.parent == (checkpoints / "savepoints").resolve()
        assert job.poll() is None, "a plain savepoint must leave the job running"

        _publish(bootstrap, topics.input, second_part)
        stopped = _savepoint(bootstrap, checkpoints, "--stop")
        assert job.wait(180) == 0, f"the run process did not exit 0 after --stop:\n{log.read_text()[-3000:]}"
    finally:
        if job.poll() is None:
            _kill(job, signal.SIGKILL)
    assert (stopped / "_metadata").is_file() and stopped != running

    _publish(bootstrap, topics.input, third_part)
    streamscore("--bootstrap", bootstrap, "replay", "risk", "--from-savepoint", str(stopped), "--bounded",
                "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                "--checkpoint-dir", str(checkpoints))
    _same_as_offline(_results(bootstrap, topics.output), _offline(stream))


@pytest.mark.slow  # four jobs with savepoints: `make test-slow`
@pytest.mark.parametrize(("before", "after"), [("per-record", "buffered"), ("buffered", "per-record")])
def test_a_savepoint_of_one_keyed_operator_restores_into_the_other(
    bootstrap: str, topics: Topics, tmp_path: Path, before: str, after: str
) -> None:
    """The two operators keep the same keyed states (names, types, layout) and timers under the same uid: a
    stop-with-savepoint of one continues in the other, every key's versions going on where they stopped."""
    stream = synthetic_events("risk", 9_000, 53)
    first_part, second_part = stream[:5_000], stream[5_000:]
    _publish(bootstrap, topics.input, first_part)
    checkpoints = tmp_path / "checkpoints"
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, checkpoints, log, "--operator", before)
    try:
        _wait_for_results(bootstrap, topics.output, 2_000, job, log)
        stopped = _savepoint(bootstrap, checkpoints, "--stop")
        assert job.wait(180) == 0, f"the run process did not exit 0 after --stop:\n{log.read_text()[-3000:]}"
    finally:
        if job.poll() is None:
            _kill(job, signal.SIGKILL)
    _publish(bootstrap, topics.input, second_part)
    streamscore("--bootstrap", bootstrap, "replay", "risk", "--from-savepoint", str(stopped), "--bounded",
                "--operator", after, "--input-topic", topics.input, "--output-topic", topics.output,
                "--dlq-topic", topics.dlq, "--checkpoint-dir", str(checkpoints))
    _same_as_offline(_results(bootstrap, topics.output), _offline(stream))
