"""Where `run` resumes a Flink job from, refusing to start over silently when its state is lost or damaged.

A job's keyed state lives only in its checkpoints; its input position also lives in its consumer group's committed
offsets. When the checkpoint folder is gone but the group has committed offsets, a plain restart would score the
rest of the input with empty state (results unlike an unbroken run's), so `run` stops and says what to do. When the
newest checkpoint's `_metadata` is empty, cut short or not Flink's, `run` stops too, naming it; and when a state
file it references (an incremental checkpoint's RocksDB files under `shared/`, or its own) is missing or not the
size the checkpoint recorded (a partial copy, a cleaned-up folder). Damage *inside* a file of the right size (a bit
flip) is left to RocksDB's block checksums, which catch it when that block is read. `--fresh`
(empty state, input from the committed offsets) skips these checks: starting over is then the operator's decision.
Flink commits the group's offsets and the sinks' transactions separately when a checkpoint completes, so after a
kill between the two, a `--fresh` start scores the newest checkpoint's events again.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.exceptions import ConfigError
from pipelines.runtimes.flink.checkpoints import latest_checkpoint
from pipelines.runtimes.flink.options import JobOptions

#: The first four bytes of every checkpoint or savepoint `_metadata` (Flink's Checkpoints.HEADER_MAGIC_NUMBER).
METADATA_MAGIC = bytes.fromhex("4960672d")


def metadata_problem(folder: Path) -> str | None:
    """What is wrong with `folder/_metadata` (missing, empty, cut short, not Flink's), or None when it looks whole."""
    metadata = folder / "_metadata"
    try:
        head = metadata.read_bytes()[:8]
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if len(head) < 8:
        return f"is cut short ({len(head)} bytes)"
    if head[:4] != METADATA_MAGIC:
        return f"does not start with Flink's header ({head[:4].hex()} instead of {METADATA_MAGIC.hex()})"
    return None


#: Flink's tag of a file-backed state handle in `_metadata` (MetadataV2V3SerializerBase.FILE_STREAM_STATE_HANDLE):
#: the tag byte, the file's size (8 bytes, big-endian), then its path (Java `writeUTF`: 2-byte length, then bytes).
_FILE_HANDLE = 2
#: The tag of a state handle whose bytes are inline in `_metadata` (BYTE_STREAM_STATE_HANDLE): tag, name, bytes.
_INLINE_HANDLE = 1


def referenced_files(folder: Path) -> dict[Path, int]:
    """The state files `folder/_metadata` references, with the size it recorded for each (files on the local
    file system: `file:` paths). State small enough to be inline in `_metadata` has no file and is not listed."""
    data = (folder / "_metadata").read_bytes()
    files: dict[Path, int] = {}
    start = data.find(b"file:")
    while start >= 11:
        length = int.from_bytes(data[start - 2:start], "big")
        tagged_file = data[start - 11] == _FILE_HANDLE and data[start - 3] != _INLINE_HANDLE
        if tagged_file and start + length <= len(data):
            path = data[start:start + length].decode("utf-8", "replace").removeprefix("file:")
            files[Path(path)] = int.from_bytes(data[start - 10:start - 2], "big", signed=True)
        start = data.find(b"file:", start + 5)
    return files


def files_problem(folder: Path) -> str | None:
    """The first state file `folder/_metadata` references that is missing or not of its recorded size, or None."""
    for path, size in referenced_files(folder).items():
        try:
            found = path.stat().st_size
        except OSError:
            return f"references {path}, which is missing"
        if found != size:
            return f"references {path} of {size} bytes, but the file has {found}"
    return None


def resume_point(options: JobOptions) -> Path | None:
    """The checkpoint or savepoint `run` resumes from (None: start with empty state, as on a first run).

    Raises `ConfigError` when the newest checkpoint is damaged, or when the checkpoint folder is gone or empty
    while the job's consumer group has committed input offsets (a previous run's state is lost)."""
    latest = latest_checkpoint(options.checkpoint_dir)
    fix = (f"resume from an older checkpoint with `streamscore replay {options.pipeline} --from-checkpoint PATH` "
           f"(`streamscore checkpoints list {options.pipeline} --checkpoint-dir {options.checkpoint_dir}` lists "
           "them), or pass --fresh to start with empty state from the consumer group's committed offsets")
    if latest is not None:
        problem = metadata_problem(latest.path)
        if problem is not None:
            raise ConfigError(f"cannot resume {options.pipeline}: the newest checkpoint {latest.path} is damaged "
                              f"(its _metadata {problem}). Nothing was started: {fix}")
        problem = files_problem(latest.path)
        if problem is not None:
            raise ConfigError(f"cannot resume {options.pipeline}: the newest checkpoint {latest.path} is damaged "
                              f"(it {problem}). Nothing was started: {fix}")
        return latest.path
    if options.checkpoint_dir.is_dir() and any(options.checkpoint_dir.iterdir()):
        return None  # a finished job's folder (a finished job keeps no checkpoint): on from the committed offsets
    committed = _committed(options)
    if committed:
        raise ConfigError(
            f"no checkpoint in {options.checkpoint_dir} (the folder is missing or empty), but consumer group "
            f"{options.id_prefix!r} has committed offsets of {options.input_topic!r} ({committed}): a previous "
            "run's state is lost with its checkpoints. Nothing was started: restore the checkpoint folder (or point "
            "--checkpoint-dir at it), or pass --fresh to continue from the committed offsets with empty state"
        )
    return None


def _committed(options: JobOptions) -> dict[int, int]:
    from pipelines.kafka.clients import committed_offsets, end_offsets, ensure_topics

    ensure_topics(options.bootstrap, [options.input_topic])
    partitions = end_offsets(options.bootstrap, options.input_topic)
    offsets = committed_offsets(options.bootstrap, options.id_prefix, options.input_topic, partitions)
    return {p: o for p, o in sorted(offsets.items()) if o >= 0}
