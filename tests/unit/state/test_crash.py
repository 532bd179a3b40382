"""Crash test: SIGKILL a process that writes multi-key batches; after reopening, every batch is wholly
present or wholly absent (the runtime entry written in it included), and every batch acknowledged before the
kill is present."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from state import RetentionPolicy, RocksVersionedStore

N_KEYS = 40
ROUNDS = 6
REPO = Path(__file__).resolve().parents[3]


def _run_and_kill(path: Path, delay: float) -> int:
    """Start the writer, let it commit for `delay` seconds after its first commit, SIGKILL it.

    Returns the last batch number the writer acknowledged (printed after its commit returned).
    """
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=python_path)
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("crash_writer.py")), str(path), str(N_KEYS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        if not first.startswith("start"):
            child.kill()
            _, err = child.communicate()
            raise AssertionError(f"crash writer did not start: {first!r}\n{err}")
        acknowledged = int(child.stdout.readline())  # at least one commit in this round
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:  # lines written before the kill
            acknowledged = int(line)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return acknowledged


def test_batches_survive_sigkill_all_or_nothing(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    path = tmp_path / "db"
    previous = 0
    for round_no in range(ROUNDS):
        delay = rng.uniform(0.0, 0.4)
        acknowledged = _run_and_kill(path, delay)
        context = f"(seed {seed}, round {round_no}, kill after {delay:.3f}s, acknowledged {acknowledged})"
        with RocksVersionedStore(path, retention=RetentionPolicy(max_versions=4)) as store:
            keys = sorted(store.keys())
            assert len(keys) == N_KEYS, context
            latest = {k: store.key(k).get() for k in keys}
            batches = {v.value["batch"] for v in latest.values() if v is not None}
            assert len(batches) == 1, f"keys disagree on the last batch: {sorted(batches)} {context}"
            (batch,) = batches
            # acknowledged commits are durable; at most the one batch in flight is missing, and whole
            assert acknowledged <= batch <= acknowledged + 1, context
            assert batch > previous, context
            assert store.get_meta("applied") == str(batch).encode(), context  # offset and state: one batch
            for key in keys:
                history = store.key(key).history(10)
                assert [v.version for v in history] == list(range(batch, max(0, batch - 4), -1)), context
                assert [v.value["batch"] for v in history] == [v.version for v in history], context
                assert store.key(key).as_of_time(batch - 1) == (history[1] if batch > 1 else None), context
        previous = batch
