"""Finding retained Flink checkpoints of a pipeline: `<checkpoint-dir>/<job-id>/chk-<n>/_metadata`."""

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


def latest_checkpoint(checkpoint_dir: Path) -> Checkpoint | None:
    """The newest completed checkpoint under `checkpoint_dir`, or None."""
    checkpoints = list_checkpoints(checkpoint_dir)
    return checkpoints[-1] if checkpoints else None


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
