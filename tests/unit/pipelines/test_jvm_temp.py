"""The Flink JVM's temporary folder per job process (`pipelines.infra.jvm_temp`): a killed job's folder
is removed by the next start, a running one's is kept, and `JVM_ARGS` points the JVM at the process's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.infra import jvm_temp


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path))
    return tmp_path


def _finished_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_start_removes_the_folders_of_processes_that_are_gone_and_keeps_the_running_ones(home: Path) -> None:
    root = home / "tmp" / "flink"
    gone = root / str(_finished_pid()) / "minicluster_0123"
    gone.mkdir(parents=True)
    (gone / "blob").write_bytes(b"x" * 1000)
    running = root / str(os.getppid())  # pytest's parent: alive while the test runs
    running.mkdir()
    other = root / "not-a-pid"
    other.mkdir()
    own = jvm_temp.jvm_temp_dir()
    assert own == root / str(os.getpid()) and own.is_dir()
    assert not gone.parent.exists() and running.is_dir() and other.is_dir()
    jvm_temp.release()
    assert not own.exists() and running.is_dir()


def test_jvm_args_name_the_process_folder_unless_they_name_one_already(home: Path) -> None:
    args = jvm_temp.with_temp_dir("-Xmx1g")
    assert args == f"-Xmx1g -Djava.io.tmpdir={home / 'tmp' / 'flink' / str(os.getpid())}"
    assert jvm_temp.with_temp_dir("-Djava.io.tmpdir=/data/tmp") == "-Djava.io.tmpdir=/data/tmp"
    jvm_temp.release()


def test_a_cluster_started_from_a_job_process_does_not_inherit_its_temporary_folder(home: Path) -> None:
    args = jvm_temp.with_temp_dir("-Xmx1g -Dfoo=1")
    assert jvm_temp.without_job_temp_dir(args) == "-Xmx1g -Dfoo=1"
    assert jvm_temp.without_job_temp_dir("-Djava.io.tmpdir=/data/tmp") == "-Djava.io.tmpdir=/data/tmp"
    jvm_temp.release()
