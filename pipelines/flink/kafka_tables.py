"""Flink SQL DDL for the Kafka tables of a job: a raw-bytes source with Kafka metadata, keyed raw sinks.

The Python `KafkaSource` hands Python only the value; declaring the source in SQL with `'format' = 'raw'`
and metadata columns gives every record its topic, partition and offset (for dead letters and state
versions). Sinks take `(k STRING, v STRING)` rows: `k` becomes the Kafka key, `v` the value.
"""

from __future__ import annotations

from pipelines.flink.options import JobOptions

SOURCE_COLUMNS = ("value", "topic", "partition", "offset")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())


def source_ddl(table: str, options: JobOptions) -> str:
    """CREATE TABLE for the input topic: `value BYTES` plus `topic`, `partition`, `offset` metadata."""
    props = {
        "connector": "kafka",
        "topic": options.input_topic,
        "properties.bootstrap.servers": options.bootstrap,
        "properties.group.id": f"streamscore-{options.pipeline}",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "earliest-offset",
        "format": "raw",
    }
    if options.bounded:
        props["scan.bounded.mode"] = "latest-offset"
    return f"""CREATE TEMPORARY TABLE `{table}` (
  `value` BYTES,
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL
) WITH (
  {_with(props)}
)"""


def sink_ddl(table: str, topic: str, options: JobOptions, *, id_suffix: str) -> str:
    """CREATE TABLE for an output topic with the job's delivery guarantee (transactional for exactly-once)."""
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
    }
    if options.delivery == "exactly-once":
        props["sink.transactional-id-prefix"] = f"{options.id_prefix}-{id_suffix}"
        props["properties.transaction.timeout.ms"] = str(options.transaction_timeout_ms)
    return f"""CREATE TEMPORARY TABLE `{table}` (
  `k` STRING,
  `v` STRING
) WITH (
  {_with(props)}
)"""
