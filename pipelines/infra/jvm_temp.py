"""The Flink JVM's temporary folder: one per job process under `<home>/tmp/flink/<pid>`, removed when it exits.

A local run's JVM (PyFlink's gateway, hosting the mini-cluster) puts its working folder (`minicluster_*`: blobs,
the extracted RocksDB library, local state), the RPC system's and the table planner's extracted jars and the
Python dependencies in `java.io.tmpdir`. Flink removes them on a clean shutdown, but a job that is killed (as
jobs are, to stop or to fail over) leaves 10-70 MB per run in /tmp. Here each job process gets its own folder,
removed at its exit, and every start removes the folders of processes that are gone.
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

from pipelines.infra.home import subdir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(root: Path) -> list[Path]:
    """Remove the folders under `root` named after processes that no longer run; returns them."""
    removed = []
    for child in root.iterdir():
        if child.is_dir() and child.name.isdigit() and not _alive(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def jvm_temp_dir() -> Path:
    """This process's JVM temporary folder (created; removed at exit, or by `release`), after removing those of
    finished ones."""
    root = subdir("tmp", "flink")
    remove_stale(root)
    own = root / str(os.getpid())
    own.mkdir(exist_ok=True)
    atexit.register(release)
    return own


def release() -> None:
    """Remove this process's JVM temporary folder, if it has one: for exits that skip `atexit` (`os._exit` once
    the embedded JVM is gone)."""
    shutil.rmtree(subdir("tmp", "flink") / str(os.getpid()), ignore_errors=True)


def without_job_temp_dir(jvm_args: str) -> str:
    """`JVM_ARGS` without a job process's `-Djava.io.tmpdir` (for JVMs that outlive that process: a cluster's)."""
    own = f"-Djava.io.tmpdir={subdir('tmp', 'flink')}{os.sep}"
    return " ".join(arg for arg in jvm_args.split() if not arg.startswith(own))


def with_temp_dir(jvm_args: str) -> str:
    """`JVM_ARGS` with `-Djava.io.tmpdir` pointing at `jvm_temp_dir()`, unless it already names one."""
    if "-Djava.io.tmpdir=" in jvm_args:
        return jvm_args
    return f"{jvm_args} -Djava.io.tmpdir={jvm_temp_dir()}".strip()
