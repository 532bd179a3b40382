"""Builds and runs a pipeline's streaming job on the embedded Flink mini-cluster.

Kafka (SQL source: raw bytes + metadata, the key read by JSON_VALUE) -> keyBy in the JVM -> one Python
operator per record: decode/validate (bad -> dead letters), then the pipeline's operator with versioned
RocksDB state and ONNX -> results and dead letters to Kafka (transactional sinks for exactly-once).
Checkpoints are retained on cancellation. While the job runs, the mini-cluster serves Flink's REST API on a
free localhost port, announced in a run-info file (`pipelines.runtimes.flink.runinfo`) so that `streamscore savepoint`
can find it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from pipelines.runtimes.flink.environment import create_environment, free_local_port
from pipelines.runtimes.flink.job_files import fingerprint
from pipelines.runtimes.flink.kafka_tables import sink_ddl, source_ddl
from pipelines.runtimes.flink.keying import key_by_sql_key, keyed_source_query
from pipelines.runtimes.flink.options import JobOptions
from pipelines.runtimes.flink.runinfo import RunInfo, remove_run_info, write_run_info

if TYPE_CHECKING:
    from pyflink.common import JobClient
    from pyflink.datastream import DataStream, KeyedStream, OutputTag, StreamExecutionEnvironment


def build(
    options: JobOptions, *, restore_path: str | None = None, rest_port: int | None = None
) -> StreamExecutionEnvironment:
    """The environment with the pipeline's dataflow attached (not yet executed); REST on `rest_port` if given."""
    env = create_environment(options, restore_path=restore_path, rest_port=rest_port)
    from pyflink.table import StreamTableEnvironment

    from pipelines.registry import get
    from pipelines.runtimes.flink.functions import DEAD_LETTERS, OUTPUT_ROW, STATE_CHANGELOG, KeyedOperatorFunction

    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl("source", options))
    t_env.execute_sql(sink_ddl("results", options.output_topic, options, id_suffix="results"))
    t_env.execute_sql(sink_ddl("dead_letters", options.dlq_topic, options, id_suffix="dlq"))

    keyed = key_by_sql_key(t_env.to_data_stream(t_env.sql_query(
        keyed_source_query("source", get(options.pipeline).key_field)
    )))
    code = fingerprint() if options.jobmanager is not None else None
    if options.operator == "buffered":
        scored = buffered_operator(keyed, options, code_fingerprint=code)
    else:
        scored = keyed.process(
            KeyedOperatorFunction(
                options.pipeline,
                options.model_ref,
                changelog=options.state_changelog is not None,
                config_path=str(options.config_path) if options.config_path else None,
                code_fingerprint=code,
            ),
            output_type=OUTPUT_ROW,
        )
    scored = scored.name(f"{options.pipeline}-operator").uid(f"{options.pipeline}-operator")
    dead = _side_output(scored, DEAD_LETTERS, options)

    statements = t_env.create_statement_set()
    statements.add_insert("results", t_env.from_data_stream(scored))
    statements.add_insert("dead_letters", t_env.from_data_stream(dead))
    if options.state_changelog is not None:
        t_env.execute_sql(sink_ddl(
            "state_changelog", options.state_changelog, options, id_suffix="changelog", value_type="BYTES"
        ))
        statements.add_insert("state_changelog", t_env.from_data_stream(_side_output(scored, STATE_CHANGELOG, options)))
    statements.attach_as_datastream()
    return env


def _side_output(scored: DataStream, tag: OutputTag, options: JobOptions) -> DataStream:
    """The side output `tag` of the keyed operator. PyFlink's `get_side_output` appends a Python identity map (a
    Python call per row, e.g. per changelog row); behind the Java operator a Java identity map (`SameRow`) takes its
    place, so that both job graphs have the same shape, hence the same generated ids for the sinks behind the side
    outputs (their transactional state), and savepoints move between the operators."""
    if options.operator != "buffered":
        return scored.get_side_output(tag)
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    j_side = scored._j_data_stream.getSideOutput(tag.get_java_output_tag())
    same_row = get_gateway().jvm.io.streamscore.flink.SameRow()
    return DataStream(j_side.map(same_row, tag.type_info.get_java_type_info()))


def buffered_operator(keyed: KeyedStream, options: JobOptions, *, code_fingerprint: str | None) -> DataStream:
    """The buffering Java operator (`pipelines.runtimes.flink.buffered`) on `keyed`, in the job graph where the
    per-record keyed function goes (same uid, keyed states and timers): results out, dead letters and the state
    changelog as the same side outputs."""
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader, get_j_env_configuration

    from pipelines.infra.operator_jar import operator_jar
    from pipelines.runtimes.flink.buffered import step_arguments
    from pipelines.runtimes.flink.functions import DEAD_LETTERS, OUTPUT_ROW, STATE_CHANGELOG
    from state.flink_state import DEFAULT_CACHE_KEYS

    add_jars_to_context_class_loader([operator_jar().resolve().as_uri()])
    gateway = get_gateway()
    j_env = keyed._j_data_stream.getExecutionEnvironment()
    changelog = options.state_changelog is not None
    arguments = step_arguments(
        options.pipeline, options.model_ref, changelog=changelog,
        config_path=str(options.config_path) if options.config_path else None, code_fingerprint=code_fingerprint,
    )
    j_operator = gateway.jvm.io.streamscore.flink.BufferedPythonOperator(
        get_j_env_configuration(j_env), options.pipeline, arguments, options.buffer_size, options.prefetch,
        DEFAULT_CACHE_KEYS,
        DEAD_LETTERS.get_java_output_tag(), STATE_CHANGELOG.get_java_output_tag() if changelog else None,
    )
    j_stream = keyed._j_data_stream.transform(
        f"{options.pipeline}-operator", OUTPUT_ROW.get_java_type_info(), j_operator
    )
    return DataStream(j_stream)


def run(
    options: JobOptions,
    *,
    restore_path: str | None = None,
    on_started: Callable[[JobClient], None] | None = None,
    done: Callable[[], bool] | None = None,
    poll_s: float = 1.0,
    attach: bool = True,
) -> None:
    """Run the job (on a session cluster when `options.jobmanager` is set: without `attach`, return once it is
    submitted) until it finishes (bounded, or stopped with a savepoint), `done()` turns true, or
    SIGINT/SIGTERM cancels it.

    Checkpoints are retained when the job is cancelled. `done` lets a caller end a job that cannot finish
    by itself (see `pipelines.runtimes.flink.bounded`); it is polled every `poll_s` seconds. While the job runs, its
    run-info file (REST URL, job id) lets `streamscore savepoint` reach it.
    """
    remote = options.jobmanager is not None
    rest_port = None if remote else free_local_port()
    env = build(options, restore_path=restore_path, rest_port=rest_port)
    client = env.execute_async(f"streamscore-{options.pipeline}")
    rest_url = f"http://{options.jobmanager}" if remote else f"http://127.0.0.1:{rest_port}"
    if remote and not attach:
        print(f"job {client.get_job_id()} submitted to the Flink cluster at {rest_url} (detached; follow it in "
              f"the Web UI, stop it with `streamscore savepoint {options.pipeline} --stop --rest-url {rest_url} "
              f"--job-id {client.get_job_id()}`)", flush=True)
        return
    info = RunInfo(
        pid=os.getpid(),
        pipeline=options.pipeline,
        job_id=str(client.get_job_id()),
        rest_url=rest_url,
        checkpoint_dir=str(options.checkpoint_dir.resolve()),
        started_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
    )
    run_file = write_run_info(info)
    print(f"job {info.job_id} started; Flink REST API on {info.rest_url} (run file {run_file})", flush=True)
    try:
        _wait(client, on_started=on_started, done=done, poll_s=poll_s)
    finally:
        remove_run_info(run_file)


def _wait(
    client: JobClient,
    *,
    on_started: Callable[[JobClient], None] | None,
    done: Callable[[], bool] | None,
    poll_s: float,
) -> None:
    if on_started is not None:
        on_started(client)
    stop = threading.Event()

    def cancel(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, cancel)
    failures: list[BaseException] = []

    def wait_for_end() -> None:
        try:
            client.get_job_execution_result().result()
        except BaseException as exc:
            failures.append(exc)
        finally:
            stop.set()

    waiter = threading.Thread(target=wait_for_end, name="job-waiter", daemon=True)
    waiter.start()
    try:
        while not stop.wait(poll_s):
            if done is not None and done():
                break
        if waiter.is_alive():
            client.cancel().result()
        elif failures:
            raise failures[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
