"""`run`'s resume point (issue 33, item 4): a damaged newest checkpoint is refused by name; a whole one is used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipelines.exceptions import ConfigError
from pipelines.runtimes.flink.options import JobOptions
from pipelines.runtimes.flink.resume import (
    METADATA_MAGIC,
    files_problem,
    metadata_problem,
    referenced_files,
    resume_point,
)


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


def _file_handle(path: Path, size: int) -> bytes:
    encoded = f"file:{path}".encode()
    return bytes([2]) + size.to_bytes(8, "big") + len(encoded).to_bytes(2, "big") + encoded


def _inline_handle(path: Path, data: bytes) -> bytes:
    encoded = f"file:{path}".encode()
    return bytes([1]) + len(encoded).to_bytes(2, "big") + encoded + len(data).to_bytes(4, "big") + data


def test_a_checkpoint_whose_referenced_state_file_is_missing_or_cut_short_is_refused(tmp_path: Path) -> None:
    options = JobOptions(pipeline="risk", bootstrap="localhost:1", input_topic="in", output_topic="out",
                         dlq_topic="dlq", checkpoint_dir=tmp_path)
    shared = tmp_path / "0123abcd" / "shared"
    shared.mkdir(parents=True)
    sst = shared / "3a89b307-b660-4b64-a0a2-1968b2c8e03e"
    sst.write_bytes(b"s" * 300)
    inline = tmp_path / "0123abcd" / "chk-1" / "never-written"  # inline state: its name is a path with no file
    checkpoint = _checkpoint(tmp_path, 1, METADATA_MAGIC + b"\0" * 12 + _file_handle(sst, 300)
                             + _inline_handle(inline, b"state bytes") + b"\0" * 8)
    assert referenced_files(checkpoint) == {sst: 300}
    assert files_problem(checkpoint) is None and resume_point(options) == checkpoint
    sst.write_bytes(b"s" * 120)  # a partial copy
    with pytest.raises(ConfigError, match=f"references {sst} of 300 bytes, but the file has 120.*--fresh"):
        resume_point(options)
    sst.unlink()
    with pytest.raises(ConfigError, match=f"newest checkpoint {checkpoint} is damaged.*{sst}, which is missing"):
        resume_point(options)
