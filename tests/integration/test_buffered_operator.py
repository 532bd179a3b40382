"""The buffered Flink operator against the per-record one, the faust runtime and the offline scorer: the same
events (producer re-sends and malformed records included) give the same result bytes (`scored_at` aside) and the
same dead letters, whichever way they were buffered."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.kafka.publishing import synthetic_events

from . import test_reco_job, test_risk_job
from .conftest import Topics, streamscore
from .test_faust_runtime import _assert_exactly_offline, _assert_same_outputs, _faust_args, _letters

pytestmark = pytest.mark.integration


def _flink(bootstrap: str, pipeline: str, topics: Topics, checkpoints: Path, *extra: str) -> None:
    streamscore("--bootstrap", bootstrap, "run", pipeline, "--bounded", "--input-topic", topics.input,
                "--output-topic", topics.output, "--dlq-topic", topics.dlq, "--checkpoint-dir", str(checkpoints),
                *extra)


def _as(topics: Topics, suffix: str) -> Topics:
    return Topics(topics.input, f"{topics.output}.{suffix}", f"{topics.dlq}.{suffix}")


@pytest.mark.slow  # seven jobs over 30k events (~6 min with the reco one): `make test-slow`
def test_buffered_per_record_faust_and_offline_give_the_same_risk_results(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 20_000, 41)
    test_risk_job._publish(bootstrap, topics, tmp_path, events=20_000, seed=41)
    per_record, buffered, small, faust = (_as(topics, s) for s in ("per-record", "buffered", "small", "faust"))
    _flink(bootstrap, "risk", per_record, tmp_path / "per-record", "--operator", "per-record")
    _flink(bootstrap, "risk", buffered, tmp_path / "buffered", "--operator", "buffered")
    # Buffers of 7 records cut through every key's run of events: per-key order must survive any cut.
    _flink(bootstrap, "risk", small, tmp_path / "small", "--operator", "buffered", "--buffer-size", "7",
           "--delivery", "at-least-once")
    streamscore(*_faust_args(bootstrap, "risk", faust, tmp_path / "faust", "--bounded"))
    for other in (buffered, small, faust):
        assert _assert_same_outputs(bootstrap, per_record, other) == 20_000
    _assert_exactly_offline(bootstrap, buffered.output, events)  # re-sends scored once, as offline
    letters = _letters(bootstrap, buffered.dlq)
    assert sorted(reason for reason, _, _ in letters) == sorted(reason for _, reason in test_risk_job.MALFORMED)


@pytest.mark.slow
def test_buffered_and_per_record_give_the_same_reco_results(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", "10000", "--seed", "43",
                "--topic", topics.input)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(raw for raw, _ in test_reco_job.MALFORMED) + b"\n")
    streamscore("--bootstrap", bootstrap, "publish", "reco", "--file", str(bad), "--topic", topics.input)
    per_record, buffered, faust = (_as(topics, s) for s in ("per-record", "buffered", "faust"))
    _flink(bootstrap, "reco", per_record, tmp_path / "per-record", "--operator", "per-record")
    _flink(bootstrap, "reco", buffered, tmp_path / "buffered", "--operator", "buffered", "--buffer-size", "64")
    streamscore(*_faust_args(bootstrap, "reco", faust, tmp_path / "faust", "--bounded", "--batch-size", "64"))
    for other in (buffered, faust):
        assert _assert_same_outputs(bootstrap, per_record, other) == 10_000
    reasons = sorted(reason for reason, _, _ in _letters(bootstrap, buffered.dlq))
    assert reasons == sorted(reason for _, reason in test_reco_job.MALFORMED)
