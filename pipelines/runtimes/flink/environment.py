"""The Flink execution environment streamscore jobs run in: thread mode, RocksDB, retained checkpoints, EOS."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.infra.cluster import MAX_PARALLELISM
from pipelines.infra.home import subdir
from pipelines.infra.jars import FLINK_CONNECTORS, jar_paths
from pipelines.infra.jvm_archive import with_archive
from pipelines.infra.jvm_temp import with_temp_dir
from pipelines.infra.operator_jar import operator_jar
from pipelines.infra.python_env import flink_python_environment
from pipelines.runtimes.flink.options import JobOptions

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

PROJECT_ROOT = Path(__file__).resolve().parents[3]

#: How the RocksDB state backend stores its files (Flink keys; Flink's defaults are snappy in 4 KB blocks). A key's
#: retained versions sit next to each other in key order and differ by an event each, so zstd over 64 KB blocks
#: shares what they have in common: `benchmarks/bounded_state_bench.py --keys 0` (10k keys x 50 events) peaks at
#: 79-88 MB of RocksDB instead of 348-389 MB, at the same rate; checkpoint flushes take as long. SST files name their
#: own compression, so state written with snappy restores and reads unchanged.
ROCKSDB_STORAGE = {
    "state.backend.rocksdb.compression.per.level": "ZSTD_COMPRESSION",
    "state.backend.rocksdb.block.blocksize": "64 kb",
}


def prepare_process_environment() -> None:
    """Set the environment the Flink JVM inherits: Python paths for thread mode, and its log folder.

    Flink's logs go to `<home>/logs/flink` (env `FLINK_LOG_DIR` wins) instead of PyFlink's install folder, and
    its temporary files to this process's own folder (`jvm_temp`; a `-Djava.io.tmpdir` in `JVM_ARGS` wins).

    PyFlink's thread mode runs Python inside the JVM (pemja) with the base interpreter's paths, so a
    virtualenv's site-packages and an editable checkout are invisible unless put on PYTHONPATH before
    the JVM starts (it inherits this process's environment).
    """
    os.environ.update(flink_python_environment())
    os.environ.setdefault("FLINK_LOG_DIR", str(subdir("logs", "flink")))
    os.environ["JVM_ARGS"] = with_temp_dir(os.environ.get("JVM_ARGS", ""))


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


def job_jars(options: JobOptions) -> list[Path]:
    """The jars shipped with the job: the Kafka connector, and the buffered operator's when it runs."""
    jars = jar_paths(FLINK_CONNECTORS)
    return [*jars, operator_jar()] if options.operator == "buffered" else jars


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
        **ROCKSDB_STORAGE,
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
        "pipeline.max-parallelism": str(MAX_PARALLELISM),
        "pipeline.jars": ";".join(p.resolve().as_uri() for p in job_jars(options)),
        "pipeline.name": f"streamscore-{options.pipeline}",
        "taskmanager.memory.managed.size": options.managed_memory,
        # Latency: flush network buffers and Python bundles quickly (defaults are 100 ms and 1 s).
        "execution.buffer-timeout.interval": "10 ms",
        "python.fn-execution.bundle.time": "10" if options.operator == "per-record" else str(options.buffer_ms),
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
    if options.metrics_port is not None:  # the reporter jar is on the classpath (`create_environment`)
        config |= {
            "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
            "metrics.reporter.prom.port": str(options.metrics_port),
        }
    if options.jobmanager is not None:  # submitted to a session cluster, whose TaskManagers size their memory
        host, _, port = options.jobmanager.rpartition(":")
        del config["taskmanager.memory.managed.size"]
        config |= {"execution.target": "remote", "rest.address": host, "rest.port": port}
    return config


def create_environment(
    options: JobOptions, *, restore_path: str | None = None, rest_port: int | None = None
) -> StreamExecutionEnvironment:
    """A StreamExecutionEnvironment configured for `options`: the local mini-cluster (REST on `rest_port` if
    given), or a session cluster's client when `options.jobmanager` names one."""
    prepare_process_environment()
    if options.metrics_port is not None:
        from pipelines.infra.cluster import flink_home, lib_with_prometheus_reporter

        # FLINK_HOME set, or PyFlink's find_flink_home overwrites FLINK_LIB_DIR with the package's lib/.
        os.environ.setdefault("FLINK_HOME", str(flink_home()))
        os.environ["FLINK_LIB_DIR"] = str(lib_with_prometheus_reporter())
    os.environ["JVM_ARGS"] = with_archive(os.environ["JVM_ARGS"])  # for the class path just settled
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    options.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config = Configuration()
    for key, value in flink_configuration(options, restore_path=restore_path, rest_port=rest_port).items():
        config.set_string(key, value)
    if options.jobmanager is None:
        return StreamExecutionEnvironment.get_execution_environment(config)
    # A standalone program always gets a local environment from `get_execution_environment` (it forces
    # execution.target=local); a session cluster is reached through Java's RemoteStreamEnvironment, which
    # uploads the jars with the job graph: the Kafka connector. flink-python (PyFlink's operators) must be in
    # the cluster's lib/, as PyFlink's deployment docs direct (`cluster up` and the image put it there):
    # shipped with each job, a TaskManager's second Python job cannot load pemja's native library again.
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    host, _, port = options.jobmanager.rpartition(":")
    jars = [str(p.resolve()) for p in job_jars(options)]
    j_jars = gateway.new_array(gateway.jvm.String, len(jars))
    for i, jar in enumerate(jars):
        j_jars[i] = jar
    j_env = gateway.jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment.createRemoteEnvironment(
        host, int(port), config._j_configuration, j_jars
    )
    return StreamExecutionEnvironment(j_env)
