"""Keying in the JVM: the key is taken from the raw JSON by Flink SQL, so each record crosses into Python once.

PyFlink's `DataStream.key_by(python_callable)` runs a Python operator before the shuffle only to compute
the key; in thread mode that operator also runs on its own task thread and competes with the keyed
operator for the one interpreter lock. Here the source query computes the key with `JSON_VALUE` next to the
raw bytes and Kafka coordinates, and the stream is keyed by that column with Flink's own key selector for
PyFlink keyed streams (`KeyByKeySelector`: field 0 of a `Row(key, value)`), exactly the layout
`DataStream.key_by` produces, so the keyed Python operator and its state are the same as before.

A record whose key cannot be read (not JSON, not an object, a key that is not a string) gets the empty
key: the keyed operator decodes every record itself and turns it into a dead letter with its reason.

The key is also the last field of the element, because PyFlink's embedded keyed operator hands Python only the
value of `Row(key, value)` and asking Flink for the current key is one more JVM call per event. Flink's planner
merges the subquery, so `JSON_VALUE` is evaluated twice per record (seen in `EXPLAIN`); that runs on the source
task's thread, not on the Python operator's, which is the job's bottleneck.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyflink.datastream import DataStream, KeyedStream

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
#: Every `LATENCY_SAMPLE`-th record's timestamp (TIMESTAMP_LTZ(3)) as epoch milliseconds, whatever the session
#: time zone (Flink SQL has no cast from TIMESTAMP_LTZ to BIGINT; a difference of two LTZ values is zone-free);
#: -1 for the others. On every record the conversion cost the job ~4 % of its throughput and raised its
#: send->scored p50 at half load from ~50 to ~250 ms (`make bench`, 2026-12-04); a sample keeps the latency
#: gauges and costs nothing measurable.
LATENCY_SAMPLE = 16
_EPOCH_MS = (f"CASE WHEN MOD(`offset`, {LATENCY_SAMPLE}) = 0 THEN "
             "TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), `timestamp`) * CAST(1000 AS BIGINT) "
             "+ EXTRACT(MILLISECOND FROM `timestamp`) ELSE CAST(-1 AS BIGINT) END")


def keyed_source_query(table: str, key_field: str) -> str:
    """SELECT `k` (the key field of the JSON value, '' when unreadable) and `v` (value, topic, partition,
    offset, the Kafka timestamp in epoch ms of every `LATENCY_SAMPLE`-th record, else -1, and the key again, so
    that Python reads the element's key from the element instead of asking Flink) from the raw Kafka source
    table `table`."""
    if not _FIELD.match(key_field):
        raise ValueError(f"key field must be a plain JSON field name, got {key_field!r}")
    return (
        f"SELECT `k`, ROW(`value`, `topic`, `partition`, `offset`, {_EPOCH_MS}, `k`) AS `v` FROM ("
        f"SELECT COALESCE(JSON_VALUE(CAST(`value` AS STRING), '$.{key_field}'), '') AS `k`, `value`, `topic`, "
        f"`partition`, `offset`, `timestamp` FROM `{table}`)"
    )


def source_record_type() -> object:
    """The type of a keyed stream's element as Python sees it: Row(value, topic, partition, offset, timestamp_ms,
    key)."""
    from pyflink.common import Types

    return Types.ROW_NAMED(
        ["value", "topic", "partition", "offset", "timestamp_ms", "key"],
        [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.STRING(), Types.INT(), Types.LONG(), Types.LONG(), Types.STRING()],
    )


def key_by_sql_key(stream: DataStream) -> KeyedStream:
    """Key the stream of `keyed_source_query` rows by `k` in the JVM (no Python key selector)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    record = source_record_type()
    row = Types.ROW_NAMED(["k", "v"], [Types.STRING(), record])
    # `to_data_stream` types rows as the table's external type; PyFlink's keyed operators need RowTypeInfo
    # (same Java Row objects, same fields), which is what `DataStream.key_by` would produce.
    stream._j_data_stream.getTransformation().setOutputType(row.get_java_type_info())
    j_keyed = stream._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, record, stream)
