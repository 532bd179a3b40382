"""Stopping a job started in its own process group (the `streamscore run` process and its Flink JVM)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 60.0) -> None:
    """SIGTERM `process`'s group (a job cancels and keeps its checkpoints), SIGKILL it after `grace_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
