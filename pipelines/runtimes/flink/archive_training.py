"""`python -m pipelines.runtimes.flink.archive_training`: the run the Flink JVM's class-data-sharing archive is written
from (`pipelines.infra.jvm_archive.build` starts it with `-XX:ArchiveClassesAtExit`).

A local run's Flink configuration (RocksDB, incremental checkpoints every 200 ms, thread mode) on a 2-second keyed
datagen job through one Python map: the classes a job's start loads, without a broker.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipelines.runtimes.flink.environment import flink_configuration, prepare_process_environment
from pipelines.runtimes.flink.options import JobOptions


def main() -> None:
    """Run the training job to its end (the JVM exits with this process and writes the archive)."""
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    prepare_process_environment()
    with tempfile.TemporaryDirectory(prefix="jvm-archive-") as folder:
        options = JobOptions(pipeline="archive", bootstrap="127.0.0.1:9", input_topic="in", output_topic="out",
                             dlq_topic="dlq", checkpoint_dir=Path(folder), checkpoint_interval_ms=200, bounded=True)
        config = Configuration()
        for key, value in flink_configuration(options).items():
            config.set_string(key, value)
        env = StreamExecutionEnvironment.get_execution_environment(config)
        t_env = StreamTableEnvironment.create(env)
        t_env.execute_sql("CREATE TEMPORARY TABLE rows_in (k INT, v STRING) WITH ('connector' = 'datagen', "
                          "'number-of-rows' = '300', 'rows-per-second' = '150', 'fields.k.min' = '1', "
                          "'fields.k.max' = '9')")
        t_env.execute_sql("CREATE TEMPORARY TABLE rows_out (k INT, v STRING) WITH ('connector' = 'blackhole')")
        stream = t_env.to_data_stream(t_env.from_path("rows_in")).key_by(lambda row: row[0]).map(
            lambda row: (row[0], row[1]), output_type=Types.TUPLE([Types.INT(), Types.STRING()]))
        t_env.from_data_stream(stream).execute_insert("rows_out").wait()


if __name__ == "__main__":
    main()
