"""Options of a faust-runtime run (what `streamscore run PIPELINE --runtime faust` accepts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import ConfigError, UsageError

DELIVERY_GUARANTEES = ("exactly-once", "at-least-once")
#: Events per micro-batch (one Kafka transaction, one RocksDB write batch per partition) by default.
DEFAULT_BATCH_SIZE = 500
#: Kept for compatibility (ms): a micro-batch is what has been fetched and never waits to fill up; batches scored
#: while a commit is in flight join the next transaction instead.
DEFAULT_BATCH_WINDOW_MS = 100


@dataclass(frozen=True)
class FaustOptions:
    """How to run one pipeline on the faust runtime: topics, state folder, consumer group, delivery, batching.

    `group_id` is the consumer group (and faust app id) the workers of one deployment share; `changelog_topic`
    receives every state version (partition = input partition), in the same transaction as the results, and is
    what a worker that takes a partition over rebuilds the partition's state from.
    """

    pipeline: str
    bootstrap: str
    input_topic: str
    output_topic: str
    dlq_topic: str
    state_dir: Path
    changelog_topic: str
    group_id: str
    config_path: Path | None = None
    model_ref: str | None = None
    delivery: str = "exactly-once"
    bounded: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_window_ms: int = DEFAULT_BATCH_WINDOW_MS
    transactional_id_prefix: str | None = None
    #: Start of a fresh consumer group: "earliest" (default) or an explicit {partition: offset}.
    start_offsets: dict[int, int] | None = None
    start_timestamp_ms: int | None = None
    session_timeout_s: float = 10.0
    #: Serve Prometheus metrics on this port (None: no endpoint).
    metrics_port: int | None = None
    #: The internal topic the input is repartitioned through, keyed by the pipeline's key (None: the input is
    #: scored as it is partitioned; see `pipelines.runtimes.faust.routing`).
    repartition_topic: str | None = None

    def __post_init__(self) -> None:
        if self.delivery not in DELIVERY_GUARANTEES:
            raise UsageError(f"--delivery must be one of {DELIVERY_GUARANTEES}, got {self.delivery!r}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 1 <= self.batch_window_ms <= 60_000:
            raise UsageError(f"--batch-window must be between 1 and 60000 ms, got {self.batch_window_ms}")
        topics = [self.input_topic, self.output_topic, self.dlq_topic, self.changelog_topic]
        if self.repartition_topic is not None:
            topics.append(self.repartition_topic)
        if len(set(topics)) != len(topics):
            raise ConfigError(
                f"input, output, dead-letter, changelog (and repartition) topics must all differ, got {topics}"
            )

    @property
    def exactly_once(self) -> bool:
        """Whether outputs, changelog and input offsets commit in one Kafka transaction per batch."""
        return self.delivery == "exactly-once"

    @property
    def scored_topic(self) -> str:
        """The topic whose partitions the state is kept by: the repartition topic if there is one, else the input."""
        return self.repartition_topic or self.input_topic

    @property
    def id_prefix(self) -> str:
        """Transactional ids are `<prefix>-<input partition>`: stable per partition, so whichever worker owns a
        partition next fences the previous owner and aborts the transaction it left open."""
        return self.transactional_id_prefix or f"streamscore-faust-{self.pipeline}-{self.output_topic}"


def default_group(pipeline: str, input_topic: str, output_topic: str) -> str:
    """The consumer group of a pipeline's faust workers (one per input and output topic)."""
    return f"streamscore-faust-{pipeline}-{input_topic}-{output_topic}"


def default_changelog(pipeline: str, output_topic: str) -> str:
    """The state changelog topic of a faust deployment, when `--state-changelog` does not name one."""
    return f"{output_topic}.{pipeline}-state-changelog"
