"""The Flink execution environment streamscore jobs run in: thread mode, RocksDB, retained checkpoints, EOS."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.infra.home import subdir
from pipelines.infra.jars import FLINK_CONNECTORS, jar_paths
from pipelines.infra.python_env import flink_python_environment
from pipelines.runtimes.flink.options import JobOptions

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def prepare_process_environment() -> None:
    """Set the environment the Flink JVM inherits: Python paths for thread mode, and its log folder.

    Flink's logs go to `<home>/logs/flink` (env `FLINK_LOG_DIR` wins) instead of PyFlink's install folder.

    PyFlink's thread mode runs Python inside the JVM (pemja) with the base interpreter's paths, so a
    virtualenv's site-packages and an editable checkout are invisible unless put on PYTHONPATH before
    the JVM starts (it inherits this process's environment).
    """
    os.environ.update(flink_python_environment())
    os.environ.setdefault("FLINK_LOG_DIR", str(subdir("logs", "flink")))


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for the mini-cluster's REST endpoint)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rest_configuration(port: int) -> dict[str, str]:
    """Flink keys that make the mini-cluster serve its REST API on 127.0.0.1:`port` (savepoints, job status)."""
    return {
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "rest.port": str(port),
        "rest.bind-port": str(port),
    }


def flink_configuration(
    options: JobOptions, *, restore_path: str | None = None, rest_port: int | None = None
) -> dict[str, str]:
    """The Flink configuration of a job run (keys of Flink 2.x); with `rest_port`, the REST API on localhost."""
    checkpoints = options.checkpoint_dir.resolve()
    config = {
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "state.backend.type": "rocksdb",
        "execution.checkpointing.interval": f"{options.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.num-retained": "3",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.min-pause": f"{min(options.checkpoint_interval_ms // 2, 500)} ms",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        "restart-strategy.exponential-delay.attempts-before-reset-backoff": "10",
        "parallelism.default": str(options.parallelism),
        "pipeline.jars": ";".join(p.resolve().as_uri() for p in jar_paths(FLINK_CONNECTORS)),
        "pipeline.name": f"streamscore-{options.pipeline}",
        "taskmanager.memory.managed.size": options.managed_memory,
        # Latency: flush network buffers and Python bundles quickly (defaults are 100 ms and 1 s).
        "execution.buffer-timeout.interval": "10 ms",
        "python.fn-execution.bundle.time": "10",
        # No defensive copies between chained operators: the SQL operators and the Python operator's
        # converters never keep a record after passing it on.
        "pipeline.object-reuse": "true",
    }
    if restore_path is not None:
        config["execution.state-recovery.path"] = restore_path
        if options.allow_non_restored_state:
            config["execution.state-recovery.ignore-unclaimed-state"] = "true"
    if rest_port is not None:
        config |= rest_configuration(rest_port)
    return config


def create_environment(
    options: JobOptions, *, restore_path: str | None = None, rest_port: int | None = None
) -> StreamExecutionEnvironment:
    """A local (mini-cluster) StreamExecutionEnvironment configured for `options` (REST on `rest_port` if given)."""
    prepare_process_environment()
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    options.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config = Configuration()
    for key, value in flink_configuration(options, restore_path=restore_path, rest_port=rest_port).items():
        config.set_string(key, value)
    return StreamExecutionEnvironment.get_execution_environment(config)
