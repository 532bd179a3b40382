"""Where a restored bounded run finds the end offsets of the job whose checkpoint or savepoint it restores."""

from __future__ import annotations

from pathlib import Path

from pipelines.runtimes.flink.bounded import record_end_offsets, saved_end_offsets

JOB = "3f2a9c0d11aa4b5e8c7d6e5f4a3b2c1d"
OTHER = "77aa9c0d11aa4b5e8c7d6e5f4a3b2c1d"


def test_a_checkpoint_finds_its_own_jobs_ends_not_another_runs(tmp_path: Path) -> None:
    record_end_offsets(tmp_path, JOB, {0: 1200, 1: 7})
    record_end_offsets(tmp_path, OTHER, {0: 50})  # an older, unrelated bounded run in the same folder
    assert saved_end_offsets(tmp_path / JOB / "chk-4", tmp_path) == {0: 1200, 1: 7}
    assert saved_end_offsets(tmp_path / OTHER / "chk-2", tmp_path) == {0: 50}


def test_a_savepoint_finds_the_job_by_its_id_prefix(tmp_path: Path) -> None:
    record_end_offsets(tmp_path, JOB, {0: 99})
    assert saved_end_offsets(tmp_path / "savepoints" / f"savepoint-{JOB[:6]}-0a1b2c3d4e5f", tmp_path) == {0: 99}


def test_nothing_recorded_means_no_saved_ends(tmp_path: Path) -> None:
    assert saved_end_offsets(tmp_path / JOB / "chk-1", tmp_path) is None  # e.g. an unbounded job's checkpoint
    assert saved_end_offsets(tmp_path / "savepoints" / "savepoint-abcdef-0a1b", tmp_path) is None
    assert saved_end_offsets(tmp_path / "elsewhere", tmp_path) is None
