"""`streamscore checkpoints list` shows retained checkpoints and savepoints, oldest first (the last is resumed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.cli import main


def _complete(folder: Path, mtime: float) -> None:
    folder.mkdir(parents=True)
    (folder / "_metadata").write_bytes(b"x")
    os.utime(folder / "_metadata", (mtime, mtime))


def test_list_shows_checkpoints_and_savepoints_oldest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _complete(tmp_path / "a1b2c3" / "chk-7", 1_700_000_000)
    _complete(tmp_path / "savepoints" / "savepoint-a1b2c3-0123456789ab", 1_700_000_100)
    _complete(tmp_path / "a1b2c3" / "chk-5", 1_699_999_000)
    (tmp_path / "a1b2c3" / "chk-8").mkdir()  # in progress: no _metadata yet
    assert main(["checkpoints", "list", "risk", "--checkpoint-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["chk-5", "chk-7", "savepoint"]
    assert lines[-1].endswith("savepoint-a1b2c3-0123456789ab")


def test_list_says_when_there_is_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checkpoints", "list", "risk", "--checkpoint-dir", str(tmp_path)]) == 1
    assert "no completed checkpoints or savepoints" in capsys.readouterr().out
