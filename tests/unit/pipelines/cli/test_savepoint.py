"""`streamscore savepoint` without Flink: run-info files (live, stale, ambiguous), REST errors, savepoint lookup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.runtimes.flink.checkpoints import latest_checkpoint
from pipelines.runtimes.flink.rest import FlinkRestClient, RestUnreachableError, flink_reason
from pipelines.runtimes.flink.runinfo import (
    NoRunningJobError,
    RunInfo,
    find_running_job,
    pid_alive,
    run_folder,
    running_jobs,
    write_run_info,
)
from pipelines.runtimes.flink.savepoints import SavepointResult, default_target, local_savepoint_since


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _info(pid: int, checkpoint_dir: str = "/data/ck", rest_url: str = "http://127.0.0.1:1") -> RunInfo:
    return RunInfo(pid, "risk", "a73f1b5a0377b690df34bafeeb9569c9", rest_url, checkpoint_dir, "2026-01-01T00:00:00Z")


def test_run_info_round_trips_through_its_file() -> None:
    info = _info(os.getpid())
    path = write_run_info(info)
    assert path == run_folder("risk") / f"{os.getpid()}.json"
    assert RunInfo.from_json(path.read_text()) == info
    assert find_running_job("risk") == info


def test_stale_run_file_is_reported_removed_and_ignored() -> None:
    stale = write_run_info(_info(_dead_pid()))
    notes: list[str] = []
    assert running_jobs("risk", report=notes.append) == []
    assert not stale.exists()
    assert len(notes) == 1 and "stale run file" in notes[0] and "no longer running" in notes[0]


def test_unreadable_run_file_is_removed() -> None:
    broken = run_folder("risk") / "123.json"
    broken.write_text("{not json")
    notes: list[str] = []
    assert running_jobs("risk", report=notes.append) == []
    assert not broken.exists() and "unreadable" in notes[0]


def test_no_running_job_says_how_to_start_one() -> None:
    with pytest.raises(NoRunningJobError, match=r"no running risk job.*streamscore run risk"):
        find_running_job("risk")


def test_several_running_jobs_are_told_apart_by_checkpoint_dir() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_run_info(_info(os.getpid(), "/data/a"))
        write_run_info(_info(sleeper.pid, "/data/b"))
        with pytest.raises(NoRunningJobError, match=r"2 risk jobs are running.*--checkpoint-dir"):
            find_running_job("risk")
        assert find_running_job("risk", checkpoint_dir=Path("/data/b")).pid == sleeper.pid
        with pytest.raises(NoRunningJobError, match="with checkpoints in /data/c"):
            find_running_job("risk", checkpoint_dir=Path("/data/c"))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cli_without_a_running_job_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    write_run_info(_info(_dead_pid()))
    assert main(["savepoint", "risk"]) == 1
    err = capsys.readouterr().err
    assert "stale run file" in err
    assert "no running risk job" in err and "streamscore run risk" in err


def test_cli_with_an_unreachable_rest_endpoint_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    write_run_info(_info(os.getpid(), rest_url=f"http://127.0.0.1:{_closed_port()}"))
    assert main(["savepoint", "risk", "--timeout", "5"]) == 1
    assert "cannot reach Flink's REST API" in capsys.readouterr().err


def test_a_cluster_given_by_jobmanager_address_is_reached_over_rest(capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    assert main(["savepoint", "risk", "--jobmanager", f"127.0.0.1:{port}", "--timeout", "5"]) == 1
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().err  # not the run file: there is none
    assert main(["savepoint", "risk", "--jobmanager", "h:1", "--rest-url", "http://h:1"]) == 2  # usage
    assert "give the cluster once" in capsys.readouterr().err


def test_rest_client_unreachable() -> None:
    with pytest.raises(RestUnreachableError, match="cannot reach Flink's REST API"):
        FlinkRestClient(f"http://127.0.0.1:{_closed_port()}", timeout_s=2).jobs()


def test_flink_reason_keeps_the_message_and_the_root_cause() -> None:
    text = (
        "org.apache.flink.runtime.rest.handler.RestHandlerException: Config key [x] is not set.\n"
        "\tat org.apache.flink.Foo.bar(Foo.java:1)\n"
        "Caused by: java.io.IOException: disk full\n\tat x.y(Z.java:2)\n"
    )
    assert flink_reason(text) == "Config key [x] is not set. (caused by: disk full)"
    assert flink_reason("") == "(no reason given)"
    assert flink_reason("plain words: here") == "plain words: here"


def test_local_savepoint_lookup_and_resume_point(tmp_path: Path) -> None:
    checkpoints = tmp_path / "ck"
    chk = checkpoints / "a73f1b5a0377b690df34bafeeb9569c9" / "chk-7"
    chk.mkdir(parents=True)
    (chk / "_metadata").write_bytes(b"x")
    old = time.time() - 100
    os.utime(chk / "_metadata", (old, old))
    assert latest_checkpoint(checkpoints) is not None and latest_checkpoint(checkpoints).path == chk  # type: ignore[union-attr]

    target = default_target(checkpoints)
    savepoint = target / "savepoint-a73f1b-3f601ade081c"
    savepoint.mkdir(parents=True)
    assert local_savepoint_since(target, "a73f1b5a0377b690df34bafeeb9569c9", time.time()) is None  # no _metadata
    (savepoint / "_metadata").write_bytes(b"x")
    assert local_savepoint_since(target, "a73f1b5a0377b690df34bafeeb9569c9", time.time() - 5) == savepoint
    assert local_savepoint_since(target, "ffffff5a0377b690df34bafeeb9569c9", time.time() - 5) is None
    latest = latest_checkpoint(checkpoints)
    assert latest is not None and latest.path == savepoint  # `run` resumes from the newer savepoint


def test_savepoint_result_path_is_a_local_path() -> None:
    assert SavepointResult("file:/tmp/sp/savepoint-a-b", stopped=False).path == "/tmp/sp/savepoint-a-b"
    assert SavepointResult("file:///tmp/sp/savepoint-a-b", stopped=True).path == "/tmp/sp/savepoint-a-b"
    assert SavepointResult("s3://bucket/sp/savepoint-a-b", stopped=True).path == "s3://bucket/sp/savepoint-a-b"


def test_an_ended_but_unreaped_process_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child.pid)  # a zombie: `savepoint --stop` must not wait for it
    finally:
        child.wait()
    assert pid_alive(os.getpid())
