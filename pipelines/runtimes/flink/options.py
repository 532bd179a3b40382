"""Options of a streaming job run (what `streamscore run PIPELINE` accepts)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import ConfigError, UsageError
from pipelines.infra.cluster import MAX_PARALLELISM

DELIVERY_GUARANTEES = ("exactly-once", "at-least-once")
#: Managed memory of the local task manager: RocksDB's block cache and write buffers live in it. The local
#: default (128 MB) makes the risk job ~10x slower past ~400k accounts (benchmarks/recovery_bench.py).
DEFAULT_MANAGED_MEMORY = "512m"
_MEMORY_SIZE = re.compile(r"^[1-9][0-9]*\s*(b|k|kb|m|mb|g|gb)?\Z", re.IGNORECASE)
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.-]+:[0-9]{1,5}\Z")
START_MODES = ("group-offsets", "earliest-offset", "timestamp", "specific-offsets")
#: The keyed operator of the Flink job: `buffered` (a Java operator, one Python call per buffer of records,
#: `pipelines.runtimes.flink.buffered`) or `per-record` (PyFlink's keyed function, one Python call per record).
OPERATORS = ("buffered", "per-record")
DEFAULT_OPERATOR = "buffered"
#: The buffered operator's most records per Python call, and the longest a record waits for its buffer to fill.
DEFAULT_BUFFER_SIZE = 512
DEFAULT_BUFFER_MS = 5


@dataclass(frozen=True)
class JobOptions:
    """How to run one pipeline job: topics, checkpointing, bounded mode, parallelism, model and delivery."""

    pipeline: str
    bootstrap: str
    input_topic: str
    output_topic: str
    dlq_topic: str
    checkpoint_dir: Path
    checkpoint_interval_ms: int = 1000
    bounded: bool = False
    parallelism: int = 1
    model_ref: str | None = None
    delivery: str = "exactly-once"
    transactional_id_prefix: str | None = None
    transaction_timeout_ms: int = 600_000
    state_changelog: str | None = None
    start_from: str = "group-offsets"
    start_timestamp_ms: int | None = None
    start_offsets: str | None = None
    stop_timestamp_ms: int | None = None
    config_path: Path | None = None
    managed_memory: str = DEFAULT_MANAGED_MEMORY
    #: Restore a checkpoint even if it holds state of operators this job graph does not have (dropped).
    allow_non_restored_state: bool = False
    #: The REST address (HOST:PORT) of a Flink session cluster to submit the job to; None: the embedded
    #: mini-cluster of this process.
    jobmanager: str | None = None
    #: Serve the mini-cluster's metrics (the operators' included) on http://localhost:PORT/metrics (Prometheus).
    metrics_port: int | None = None
    #: The keyed operator (`OPERATORS`).
    operator: str = DEFAULT_OPERATOR
    #: The buffered operator's buffer: at most this many records, and at most `buffer_ms` ms of waiting.
    buffer_size: int = DEFAULT_BUFFER_SIZE
    buffer_ms: int = DEFAULT_BUFFER_MS
    #: The buffered operator reads each buffer's heads and latest records in Java before calling Python (else
    #: Python reads what its head cache misses, one call into Java per read).
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.delivery not in DELIVERY_GUARANTEES:
            raise UsageError(f"--delivery must be one of {DELIVERY_GUARANTEES}, got {self.delivery!r}")
        if self.checkpoint_interval_ms < 100:
            raise UsageError(f"--checkpoint-interval must be >= 100 ms, got {self.checkpoint_interval_ms}")
        if not _MEMORY_SIZE.match(self.managed_memory):
            raise UsageError(f"--managed-memory must be a size like 512m or 2g, got {self.managed_memory!r}")
        if not 1 <= self.parallelism <= MAX_PARALLELISM:
            raise UsageError(f"--parallelism must be between 1 and the jobs' max parallelism {MAX_PARALLELISM} "
                              f"(the number of key groups of their state), got {self.parallelism}")
        if self.operator not in OPERATORS:
            raise UsageError(f"--operator must be one of {OPERATORS}, got {self.operator!r}")
        if not 1 <= self.buffer_size <= 100_000:
            raise UsageError(f"--buffer-size must be between 1 and 100000 records, got {self.buffer_size}")
        if not 1 <= self.buffer_ms <= 5:
            raise UsageError(f"--buffer-ms must be between 1 and 5 ms, got {self.buffer_ms}")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise UsageError(f"--metrics-port must be a TCP port, got {self.metrics_port}")
        if self.metrics_port is not None and self.jobmanager is not None:
            raise UsageError("--metrics-port is for the embedded mini-cluster; a session cluster's JVMs report "
                              "on the ports `streamscore cluster status` lists")
        if self.jobmanager is not None and not _HOST_PORT.match(self.jobmanager):
            raise UsageError(f"--jobmanager must be the cluster's REST address HOST:PORT, got {self.jobmanager!r}")
        topics = [self.input_topic, self.output_topic, self.dlq_topic]
        if self.state_changelog is not None:
            topics.append(self.state_changelog)
        if len(set(topics)) != len(topics):
            raise ConfigError(
                f"input, output, dead-letter and changelog topics must all differ, got {topics}"
            )
        if self.start_from not in START_MODES:
            raise ConfigError(f"start mode must be one of {START_MODES}, got {self.start_from!r}")
        if (self.start_from == "timestamp") != (self.start_timestamp_ms is not None):
            raise UsageError("a timestamp start needs --from-timestamp (and only then)")
        if (self.start_from == "specific-offsets") != (self.start_offsets is not None):
            raise UsageError("a specific-offsets start needs --from-offsets (and only then)")
        if self.stop_timestamp_ms is not None and not self.bounded:
            raise UsageError("a stop timestamp (--to-timestamp) needs a bounded run")
        if not 60_000 <= self.transaction_timeout_ms <= 900_000:
            raise UsageError(
                "--transaction-timeout must be between 60 s and the broker's transaction.max.timeout.ms "
                f"(15 min by default), got {self.transaction_timeout_ms} ms"
            )

    @property
    def id_prefix(self) -> str:
        """The transactional id prefix: stable per pipeline and output topic, so a restarted job aborts the
        transactions a crashed one left open (two jobs running at once need distinct prefixes)."""
        if self.transactional_id_prefix:
            return self.transactional_id_prefix
        return f"streamscore-{self.pipeline}-{self.output_topic}"
