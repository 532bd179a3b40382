"""Finding retained Flink checkpoints of a pipeline: `<checkpoint-dir>/<job-id>/chk-<n>/_metadata`, and the
savepoints `streamscore savepoint` writes by default: `<checkpoint-dir>/savepoints/savepoint-<id>-<rnd>/_metadata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.exceptions import ConfigError


@dataclass(frozen=True)
class Checkpoint:
    """A completed, retained checkpoint: its folder, the job that took it, its number and completion time."""

    path: Path
    job_id: str
    number: int
    completed_at: datetime


def list_checkpoints(checkpoint_dir: Path) -> list[Checkpoint]:
    """Completed checkpoints under `checkpoint_dir`, oldest first (a checkpoint is complete once it has `_metadata`)."""
    if not checkpoint_dir.exists():
        return []
    found = []
    for metadata in checkpoint_dir.glob("*/chk-*/_metadata"):
        folder = metadata.parent
        try:
            number = int(folder.name.removeprefix("chk-"))
        except ValueError:
            continue
        completed = datetime.fromtimestamp(metadata.stat().st_mtime, tz=UTC)
        found.append(Checkpoint(folder, folder.parent.name, number, completed))
    return sorted(found, key=lambda c: (c.completed_at, c.number))


def list_savepoints(checkpoint_dir: Path) -> list[Checkpoint]:
    """Completed savepoints in `checkpoint_dir/savepoints` (where `streamscore savepoint` writes), oldest first.

    Their `job_id` is the job id prefix Flink puts in the folder name; `number` is 0.
    """
    found = []
    for metadata in (checkpoint_dir / "savepoints").glob("savepoint-*/_metadata"):
        folder = metadata.parent
        job_prefix = folder.name.removeprefix("savepoint-").split("-")[0]
        completed = datetime.fromtimestamp(metadata.stat().st_mtime, tz=UTC)
        found.append(Checkpoint(folder, job_prefix, 0, completed))
    return sorted(found, key=lambda c: c.completed_at)


def latest_checkpoint(checkpoint_dir: Path) -> Checkpoint | None:
    """The newest completed checkpoint or savepoint under `checkpoint_dir`, or None.

    A job stopped with `streamscore savepoint --stop` leaves no retained checkpoint (a finished job cleans
    them up) but its final savepoint, so `run` resumes from that.
    """
    candidates = list_checkpoints(checkpoint_dir) + list_savepoints(checkpoint_dir)
    return max(candidates, key=lambda c: c.completed_at) if candidates else None


def resolve_checkpoint(spec: str, checkpoint_dir: Path) -> Path:
    """`latest` (newest under `checkpoint_dir`) or an explicit checkpoint/savepoint folder holding `_metadata`."""
    if spec == "latest":
        latest = latest_checkpoint(checkpoint_dir)
        if latest is None:
            raise ConfigError(
                f"no completed checkpoint under {checkpoint_dir}: run the job first, or start with --fresh"
            )
        return latest.path
    path = Path(spec).expanduser().resolve()
    if not (path / "_metadata").exists():
        raise ConfigError(f"{path} is not a completed checkpoint or savepoint (no _metadata file in it)")
    return path
