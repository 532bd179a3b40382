"""Lost or damaged local state (issue 33, item 4) on the real broker.

faust: a partition store whose CURRENT, MANIFEST or an SST file is damaged is refused before anything is scored
(exit 1, a message naming the folder and the fix, no traceback, no new output); moved aside as the message says,
the state is rebuilt from the changelog and every result equals the offline scorer's (the deleted folder alone:
`test_faust_runtime.test_lost_faust_state_is_rebuilt_from_its_changelog_and_readable_with_state_get`).

Flink: a run whose checkpoints are gone or damaged while its consumer group has committed input offsets stops
with a message saying what to do (a missing or garbled `_metadata`, a state file it references cut short);
`--fresh` starts it with empty state.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from pipelines.kafka.clients import committed_offsets, end_offsets
from pipelines.kafka.publishing import synthetic_events
from pipelines.runtimes.flink.checkpoints import list_checkpoints
from pipelines.runtimes.flink.resume import metadata_problem, referenced_files

from .conftest import Topics, start_job
from .test_faust_runtime import _assert_exactly_offline, _faust_args, _publish, _records
from .test_recovery import _kill, _wait_for_results

pytestmark = pytest.mark.integration


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def _damage(folder: Path, part: str) -> Path:
    """Damage one file of the RocksDB folder the way a bad disk or a killed copy does; return the file."""
    if part == "CURRENT":
        target = folder / "CURRENT"
        target.write_bytes(b"MANIFEST-0000")  # cut short: no newline, no such manifest
    elif part == "MANIFEST":
        target = next(folder.glob("MANIFEST-*"))  # its first record garbled (RocksDB reads a MANIFEST whose *tail*
        data = bytearray(target.read_bytes())  # is damaged up to the last good edit: a consistent earlier store,
        for i in range(48):  # which the changelog replay brings up to date)
            data[i] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target = max(folder.glob("*.sst"), key=lambda p: p.stat().st_size)
        garbled = bytearray(target.read_bytes())
        for i in range(64, len(garbled) // 2, 97):
            garbled[i] ^= 0xFF
        target.write_bytes(bytes(garbled))
    return target


def test_a_damaged_faust_store_is_refused_by_name_then_rebuilt_from_the_changelog(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 4_000, 67)
    _publish(bootstrap, topics.input, events[:2_000])
    state_dir = tmp_path / "state"
    args = _faust_args(bootstrap, "risk", topics, state_dir, "--bounded")
    first = _run(args)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = state_dir / f"{topics.input}-0"
    assert any(folder.glob("*.sst")), sorted(p.name for p in folder.iterdir())
    pristine = tmp_path / "pristine"
    shutil.copytree(folder, pristine)
    _publish(bootstrap, topics.input, events[2_000:])
    for part in ("CURRENT", "MANIFEST", "sst"):
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder)
        damaged = _damage(folder, part)
        refused = _run(args)
        assert refused.returncode == 1, (part, refused.stdout[-2000:], refused.stderr[-3000:])
        assert f"the state in {folder} cannot be read" in refused.stderr, (part, refused.stderr[-3000:])
        assert "Move the folder aside" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert len(_records(bootstrap, topics.output)) == 2_000, f"{part}: scored from a damaged store ({damaged})"
    shutil.move(folder, tmp_path / "damaged")  # what the message says to do
    second = _run(args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "versions restored" in second.stdout + second.stderr
    _assert_exactly_offline(bootstrap, topics.output, events)


@pytest.mark.slow  # three Flink runs (~110 s): `make test-slow`; the faust case runs in `make test`
def test_a_flink_run_whose_checkpoints_are_damaged_or_gone_stops_unless_fresh(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    events = synthetic_events("risk", 15_000, 71)
    _publish(bootstrap, topics.input, events)
    checkpoints = tmp_path / "checkpoints"
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, checkpoints, log, "--bounded")
    _wait_for_results(bootstrap, topics.output, 2_000, job, log)
    deadline = time.monotonic() + 60
    while not list_checkpoints(checkpoints):  # killed once a checkpoint completed (its input offsets committed)
        assert time.monotonic() < deadline and job.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    _kill(job, signal.SIGKILL)
    newest = list_checkpoints(checkpoints)[-1].path
    assert metadata_problem(newest) is None  # a real checkpoint's _metadata passes the check
    args = ["--bootstrap", bootstrap, "run", "risk", "--bounded", "--input-topic", topics.input, "--output-topic",
            topics.output, "--dlq-topic", topics.dlq, "--checkpoint-dir", str(checkpoints)]

    written = end_offsets(bootstrap, topics.output)
    metadata = newest / "_metadata"
    whole = metadata.read_bytes()
    metadata.write_bytes(whole[:5])  # cut short, as by a full disk
    refused = _run(args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"the newest checkpoint {newest} is damaged" in refused.stderr and "--fresh" in refused.stderr
    metadata.write_bytes(whole)

    files = referenced_files(newest)  # the RocksDB files of the incremental checkpoint (shared/, its own)
    assert files, f"{newest} references no state file: every state inline in _metadata"
    victim = max(files, key=lambda path: files[path])
    contents = victim.read_bytes()
    victim.write_bytes(contents[: len(contents) // 2])  # a partial copy of the checkpoint folder
    refused = _run(args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"the newest checkpoint {newest} is damaged (it references {victim}" in refused.stderr, refused.stderr
    victim.write_bytes(contents)

    shutil.rmtree(checkpoints)  # the folder is gone; the consumer group still has the offsets it committed
    refused = _run(args)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "state is lost with its checkpoints" in refused.stderr and "--fresh" in refused.stderr, refused.stderr
    assert end_offsets(bootstrap, topics.output) == written  # nothing was started: nothing more written

    # Told to: empty state, input on from the committed offsets. Flink commits the group's offsets and the
    # sink's transaction separately when a checkpoint completes, so a kill between the two can leave the newest
    # checkpoint's results committed and its offsets not (seen in CI, 2026-12-07): the events from the committed
    # offsets on are then scored again. What `--fresh` promises is exactly that: nothing before the committed
    # offsets scored again, everything from them scored once by the fresh run, nothing lost.
    group = f"streamscore-risk-{topics.output}"  # the job's consumer group (its transactional id prefix)
    committed = committed_offsets(bootstrap, group, topics.input, end_offsets(bootstrap, topics.input))
    fresh = _run([*args, "--fresh"])
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    position = {msgspec.json.decode(r.value)["event_id"]: (r.partition, r.offset)
                for r in _records(bootstrap, topics.input)}
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    for record in _records(bootstrap, topics.output):
        event_id = msgspec.json.decode(record.value)["event_id"]
        (after if record.offset >= written[record.partition] else before)[event_id] += 1
    redone = {e for e, (partition, offset) in position.items() if offset >= committed.get(partition, 0)}
    assert set(before) | set(after) == set(position), "events lost across the fresh start"
    assert set(after) == redone and max(after.values()) == 1, (len(after), len(redone))
    assert max(before.values()) == 1  # the killed run's results: each once
