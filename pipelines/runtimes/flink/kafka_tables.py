"""Flink SQL DDL for the Kafka tables of a job: a raw-bytes source with Kafka metadata, keyed raw sinks.

The Python `KafkaSource` hands Python only the value; declaring the source in SQL with `'format' = 'raw'`
and metadata columns gives every record its topic, partition and offset (for dead letters and state
versions). Sinks take `(k STRING, v STRING)` rows (`v BYTES` for the state changelog's binary values): `k` becomes
the Kafka key, `v` the value.
"""

from __future__ import annotations

from pipelines.kafka import security
from pipelines.runtimes.flink.options import JobOptions


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def _client_security() -> dict[str, str]:
    """The process's Kafka security settings as the tables' `properties.*` (the Java client's names)."""
    return {f"properties.{k}": v for k, v in security.active().java_properties(shaded=True).items()}


def source_ddl(table: str, options: JobOptions) -> str:
    """CREATE TABLE for the input topic: `value BYTES` plus `topic`, `partition`, `offset`, `timestamp` metadata.

    Without a checkpoint to restore, the source starts where `options.start_from` says; the default,
    `group-offsets`, continues from the offsets the job's consumer group committed at its last completed
    checkpoint (earliest when it has none). Restored jobs take their offsets from the checkpoint.
    """
    props = {
        "connector": "kafka",
        "topic": options.input_topic,
        "properties.bootstrap.servers": options.bootstrap,
        "properties.group.id": options.id_prefix,
        "properties.isolation.level": "read_committed",
        "properties.auto.offset.reset": "earliest",
        "properties.fetch.max.wait.ms": "50",  # latency: don't hold a fetch 500 ms when traffic is light
        "scan.startup.mode": options.start_from,
        "format": "raw",
        **_client_security(),
    }
    if options.start_timestamp_ms is not None:
        props["scan.startup.timestamp-millis"] = str(options.start_timestamp_ms)
    if options.start_offsets is not None:
        props["scan.startup.specific-offsets"] = options.start_offsets
    if options.stop_timestamp_ms is not None:  # bounded: stop at the first record at or after this time
        props["scan.bounded.mode"] = "timestamp"
        props["scan.bounded.timestamp-millis"] = str(options.stop_timestamp_ms)
    elif options.bounded:
        props["scan.bounded.mode"] = "latest-offset"
    return f"""CREATE TEMPORARY TABLE `{table}` (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `timestamp` TIMESTAMP_LTZ(3) METADATA VIRTUAL
) WITH (
  {_with(props)}
)"""


def sink_ddl(table: str, topic: str, options: JobOptions, *, id_suffix: str, value_type: str = "STRING") -> str:
    """CREATE TABLE for an output topic with the job's delivery guarantee (transactional for exactly-once);
    `value_type` is the SQL type of the value column `v` (`STRING`, or `BYTES` for binary values)."""
    if value_type not in ("STRING", "BYTES"):
        raise ValueError(f"sink value type must be STRING or BYTES, got {value_type!r}")
    props = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": options.bootstrap,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": options.delivery,
        "properties.compression.type": "lz4",
        "properties.linger.ms": "5",
        **_client_security(),
    }
    if options.delivery == "exactly-once":
        props["sink.transactional-id-prefix"] = f"{options.id_prefix}-{id_suffix}"
        props["properties.transaction.timeout.ms"] = str(options.transaction_timeout_ms)
    return f"""CREATE TEMPORARY TABLE `{table}` (
  `k` STRING,
  `v` {value_type}
) WITH (
  {_with(props)}
)"""
