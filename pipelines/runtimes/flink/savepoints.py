"""Taking a savepoint of a running job through Flink's REST API, optionally stopping the job with it.

A stopped job's mini-cluster shuts down with the `run` process as soon as the job finishes, often before the
completed stop-with-savepoint can be read back over REST. Then the savepoint is found where it was written:
the newest `savepoint-<job id prefix>-*` folder with a `_metadata` file in the (local) target directory,
written after the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import PipelineError
from pipelines.runtimes.flink.rest import FlinkRestClient, RestUnreachableError

DEFAULT_SUBDIR = "savepoints"


class SavepointError(PipelineError):
    """A savepoint could not be taken (Flink's reason included), or did not complete in time."""


@dataclass(frozen=True)
class SavepointResult:
    """A completed savepoint: its folder (or URI, on a remote file system) and whether the job was stopped."""

    location: str
    stopped: bool

    @property
    def path(self) -> str:
        """The location as a local path when it is on the local file system (what `--from-savepoint` takes)."""
        if self.location.startswith("file://"):
            return self.location.removeprefix("file://")
        return self.location.removeprefix("file:")


def default_target(checkpoint_dir: Path) -> Path:
    """Where `streamscore savepoint` puts a local job's savepoints: `<checkpoint dir>/savepoints`."""
    return checkpoint_dir / DEFAULT_SUBDIR


def local_savepoint_since(target: Path, job_id: str, since: float) -> Path | None:
    """The newest completed savepoint of `job_id` under `target` written at or after `since` (epoch s)."""
    if not target.is_dir():
        return None
    found = [
        metadata.parent
        for metadata in target.glob(f"savepoint-{job_id[:6]}-*/_metadata")
        if metadata.stat().st_mtime >= since - 1.0
    ]
    return max(found, key=lambda folder: (folder / "_metadata").stat().st_mtime) if found else None


def take_savepoint(
    client: FlinkRestClient,
    job_id: str,
    target: str | None,
    *,
    stop: bool,
    timeout_s: float,
    process_alive: Callable[[], bool] | None = None,
    poll_s: float = 0.5,
) -> SavepointResult:
    """Trigger a savepoint (or stop-with-savepoint) of `job_id` and wait until it completed.

    `process_alive` tells whether the local `run` process still lives: once it ended after a stop, the
    savepoint is looked up in the local `target` folder instead of over REST.
    """
    requested = time.time()
    trigger = client.stop_with_savepoint(job_id, target) if stop else client.trigger_savepoint(job_id, target)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = client.savepoint_status(job_id, trigger)
        except RestUnreachableError:
            if not stop or target is None or "://" in target:
                raise
            ended = process_alive is None or not process_alive()
            found = local_savepoint_since(Path(target), job_id, requested) if ended else None
            if found is not None:
                return SavepointResult(str(found), stopped=True)
            if ended:
                raise SavepointError(
                    f"the job's process ended after the stop request, but no new savepoint of job {job_id} is in "
                    f"{target}: see the `run` process's output and the Flink logs"
                ) from None
        else:
            if status.failure is not None:
                what = "stop-with-savepoint" if stop else "savepoint"
                raise SavepointError(f"Flink's {what} of job {job_id} failed: {status.failure}")
            if status.completed and status.location:
                return SavepointResult(status.location, stopped=stop)
        if time.monotonic() > deadline:
            raise SavepointError(
                f"the savepoint of job {job_id} (trigger {trigger}) did not complete within {timeout_s:.0f} s; "
                "it may still complete: look in the target folder, or retry with a larger --timeout"
            )
        time.sleep(poll_s)
