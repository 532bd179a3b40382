"""The Flink limit: the real job's Kafka SQL source and sink tables around an identity Python function.

Same environment as `streamscore run` (`pipelines.runtimes.flink.environment.create_environment`: thread mode,
RocksDB, checkpoints, the connector jar) and the same table DDL
(`pipelines.runtimes.flink.kafka_tables`), at-least-once;
one Python map turns each source row into a sink row `(k = NULL, v = the value as text)`. Nothing else: no
decode, no key_by, no state. With `--bounded` it reads what the input topic holds at start, then finishes.

Usage: python flink_passthrough.py --bootstrap HOST:PORT --input T --output T --checkpoint-dir D [--bounded]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pipelines.runtimes.flink.environment import create_environment
from pipelines.runtimes.flink.kafka_tables import sink_ddl, source_ddl
from pipelines.runtimes.flink.options import JobOptions


def identity(row: Any) -> Any:
    """The source row's value as the sink row's value (no key)."""
    from pyflink.common import Row

    return Row(None, bytes(row[0]).decode())


def run(options: JobOptions) -> None:
    """Build the passthrough job for `options` and run it until it finishes (bounded) or is cancelled."""
    env = create_environment(options)
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl("source", options))
    t_env.execute_sql(sink_ddl("results", options.output_topic, options, id_suffix="results"))
    rows = t_env.to_data_stream(t_env.from_path("source"))
    out_type = Types.ROW_NAMED(["k", "v"], [Types.STRING(), Types.STRING()])
    copied = rows.map(identity, output_type=out_type).name("identity")
    statements = t_env.create_statement_set()
    statements.add_insert("results", t_env.from_data_stream(copied))
    statements.attach_as_datastream()
    env.execute("bench-flink-passthrough")


def main() -> None:
    """Parse the command line and run; exits without waiting for the JVM's slow teardown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--checkpoint-dir", required=True, type=Path)
    parser.add_argument("--bounded", action="store_true")
    args = parser.parse_args()
    options = JobOptions(
        pipeline="risk",
        bootstrap=args.bootstrap,
        input_topic=args.input,
        output_topic=args.output,
        dlq_topic=args.output + ".dlq",
        checkpoint_dir=args.checkpoint_dir,
        bounded=args.bounded,
        delivery="at-least-once",
    )
    run(options)
    print("finished", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
