"""`run`'s resume point (issue 33, item 4): a damaged newest checkpoint is refused by name; a whole one is used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipelines.exceptions import ConfigError
from pipelines.runtimes.flink.options import JobOptions
from pipelines.runtimes.flink.resume import METADATA_MAGIC, metadata_problem, resume_point


def _checkpoint(root: Path, number: int, metadata: bytes) -> Path:
    folder = root / "0123abcd" / f"chk-{number}"
    folder.mkdir(parents=True)
    (folder / "_metadata").write_bytes(metadata)
    return folder


def test_metadata_problem_tells_whole_from_cut_short_and_foreign(tmp_path: Path) -> None:
    whole = _checkpoint(tmp_path, 1, METADATA_MAGIC + b"\0\0\0\x05" + b"x" * 100)
    assert metadata_problem(whole) is None
    assert "cut short" in str(metadata_problem(_checkpoint(tmp_path, 2, METADATA_MAGIC[:3])))
    assert "Flink's header" in str(metadata_problem(_checkpoint(tmp_path, 3, b"garbage garbage")))
    assert "cannot be read" in str(metadata_problem(tmp_path / "nowhere"))


def test_resume_point_uses_a_whole_newest_checkpoint_and_refuses_a_damaged_one(tmp_path: Path) -> None:
    options = JobOptions(pipeline="risk", bootstrap="localhost:1", input_topic="in", output_topic="out",
                         dlq_topic="dlq", checkpoint_dir=tmp_path)
    whole = _checkpoint(tmp_path, 1, METADATA_MAGIC + b"\0" * 20)
    assert resume_point(options) == whole
    damaged = _checkpoint(tmp_path, 2, b"")
    os.utime(damaged / "_metadata", (time.time() + 5, time.time() + 5))  # completed after the first
    with pytest.raises(ConfigError, match=f"newest checkpoint {damaged} is damaged.*--fresh"):
        resume_point(options)
