"""`--operator buffered|per-record` and the buffer's bounds: the buffered operator is the default, its options are
Flink's (refused with the faust runtime), and out-of-range buffers are refused with the accepted range."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import parser
from pipelines.cli.common import check_runtime_options
from pipelines.exceptions import UsageError
from pipelines.runtimes.flink.environment import ROCKSDB_STORAGE, flink_configuration, job_jars
from pipelines.runtimes.flink.options import JobOptions


def _options(**fields: object) -> JobOptions:
    return JobOptions(pipeline="risk", bootstrap="h:1", input_topic="in", output_topic="out", dlq_topic="dlq",
                      checkpoint_dir=Path("/tmp/never-used"), **fields)  # type: ignore[arg-type]


def test_the_buffered_operator_is_the_default() -> None:
    args = parser().parse_args(["run", "risk"])
    assert args.operator == "buffered" and _options().operator == "buffered"
    assert parser().parse_args(["run", "risk", "--operator", "per-record"]).operator == "per-record"


@pytest.mark.parametrize("flag", [["--operator", "per-record"], ["--buffer-size", "64"], ["--buffer-ms", "2"]])
def test_the_faust_runtime_refuses_the_flink_operator_options(flag: list[str]) -> None:
    args = parser().parse_args(["run", "risk", "--runtime", "faust", *flag])
    with pytest.raises(UsageError, match="not used by --runtime faust"):
        check_runtime_options(args)


@pytest.mark.parametrize(("fields", "message"), [
    ({"operator": "batched"}, "--operator must be one of"),
    ({"buffer_size": 0}, "--buffer-size must be between 1 and 100000"),
    ({"buffer_ms": 6}, "--buffer-ms must be between 1 and 5"),
    ({"buffer_ms": 0}, "--buffer-ms must be between 1 and 5"),
])
def test_out_of_range_buffers_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        _options(**fields)


def test_only_the_buffered_job_ships_the_operator_jar_and_its_bundle_time_is_the_buffer_time() -> None:
    buffered, per_record = _options(buffer_ms=3), _options(operator="per-record")
    assert [p.name for p in job_jars(buffered)][-1] == "streamscore-flink-operator.jar"
    assert all(p.name != "streamscore-flink-operator.jar" for p in job_jars(per_record))
    assert flink_configuration(buffered)["python.fn-execution.bundle.time"] == "3"
    assert flink_configuration(per_record)["python.fn-execution.bundle.time"] == "10"


def test_every_job_stores_its_rocksdb_state_as_zstd_in_64_kb_blocks() -> None:
    for options in (_options(), _options(operator="per-record"), _options(jobmanager="h:8081")):
        config = flink_configuration(options)
        assert config["state.backend.rocksdb.compression.per.level"] == "ZSTD_COMPRESSION"
        assert config["state.backend.rocksdb.block.blocksize"] == "64 kb"
        assert ROCKSDB_STORAGE.items() <= config.items()
