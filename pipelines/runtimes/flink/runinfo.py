"""Run-info files: how `streamscore savepoint` finds a job that `streamscore run` is running.

While a job runs, its `run` process keeps `<home>/run/<pipeline>/<pid>.json` holding the process id, the
pipeline, the Flink job id, the mini-cluster's REST URL, the checkpoint folder and the start time; the file is
removed when the job ends. A file left by a killed process (its pid is no longer alive) is stale: it is
ignored, reported and deleted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.exceptions import ConfigError
from pipelines.infra.home import subdir


class NoRunningJobError(ConfigError):
    """No live `streamscore run` process of the pipeline (or several, and the choice is ambiguous)."""


@dataclass(frozen=True)
class RunInfo:
    """What a running job's `run` process publishes about itself."""

    pid: int
    pipeline: str
    job_id: str
    rest_url: str
    checkpoint_dir: str
    started_at: str

    def to_json(self) -> str:
        """The file content."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        """Parse a run-info file's content (ValueError/KeyError/TypeError if it is not one)."""
        data = json.loads(text)
        return cls(
            pid=int(data["pid"]),
            pipeline=str(data["pipeline"]),
            job_id=str(data["job_id"]),
            rest_url=str(data["rest_url"]),
            checkpoint_dir=str(data["checkpoint_dir"]),
            started_at=str(data["started_at"]),
        )


def run_folder(pipeline: str) -> Path:
    """The folder holding the run-info files of `pipeline`'s running jobs."""
    return subdir("run", pipeline)


def write_run_info(info: RunInfo) -> Path:
    """Write `info` atomically as `<home>/run/<pipeline>/<pid>.json`; returns the path."""
    path = run_folder(info.pipeline) / f"{info.pid}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(info.to_json())
    partial.replace(path)
    return path


def remove_run_info(path: Path) -> None:
    """Delete a run-info file (no error if it is already gone)."""
    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists and has not ended (a zombie waiting to be reaped has ended)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust the signal check
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def running_jobs(pipeline: str, *, report: Callable[[str], None] | None = None) -> list[RunInfo]:
    """The live jobs of `pipeline`, oldest first; stale or unreadable run-info files are reported and deleted."""
    found = []
    for path in sorted(run_folder(pipeline).glob("*.json")):
        try:
            info = RunInfo.from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if report is not None:
                report(f"ignoring unreadable run file {path} ({exc}); removing it")
            remove_run_info(path)
            continue
        if not pid_alive(info.pid):
            if report is not None:
                report(
                    f"ignoring stale run file {path}: its process {info.pid} (job {info.job_id}, started "
                    f"{info.started_at}) is no longer running; removing it"
                )
            remove_run_info(path)
            continue
        found.append(info)
    return sorted(found, key=lambda info: info.started_at)


def find_running_job(
    pipeline: str, *, checkpoint_dir: Path | None = None, report: Callable[[str], None] | None = None
) -> RunInfo:
    """The one live job of `pipeline` (the one using `checkpoint_dir` when given), or a NoRunningJobError
    saying how to start one or how to choose among several."""
    jobs = running_jobs(pipeline, report=report)
    if checkpoint_dir is not None:
        wanted = str(checkpoint_dir.expanduser().resolve())
        jobs = [info for info in jobs if info.checkpoint_dir == wanted]
    where = f" with checkpoints in {checkpoint_dir}" if checkpoint_dir is not None else ""
    if not jobs:
        raise NoRunningJobError(
            f"no running {pipeline} job{where} (no live run file under {run_folder(pipeline)}): start one with "
            f"`streamscore run {pipeline}`, or pass --rest-url URL --job-id ID for a job on a Flink cluster"
        )
    if len(jobs) > 1:
        listed = "; ".join(f"pid {i.pid}, job {i.job_id}, checkpoints in {i.checkpoint_dir}" for i in jobs)
        raise NoRunningJobError(
            f"{len(jobs)} {pipeline} jobs are running ({listed}): choose one with --checkpoint-dir DIR"
        )
    return jobs[0]
