"""`streamscore`: the command line (broker, publishing, jobs, consuming, models, demo)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.decoders import DECODERS
from pipelines.exceptions import ConfigError, PipelineError
from pipelines.flink.options import DEFAULT_MANAGED_MEMORY

DEFAULT_BOOTSTRAP = os.environ.get("STREAMSCORE_BOOTSTRAP", "127.0.0.1:9092")
EXIT_ERROR = 2
PIPELINES = sorted(DECODERS)


def _cmd_kafka(args: argparse.Namespace) -> int:
    from pipelines.infra import broker

    if args.action == "up":
        st = broker.up(args.port)
        print(f"kafka running on {st.bootstrap} (pid {st.pid}, data in {st.folder})")
    elif args.action == "down":
        print("kafka stopped" if broker.down(args.port) else f"no project broker running on port {args.port}")
    else:
        st = broker.status(args.port)
        print(f"kafka on {st.bootstrap}: {'running, pid ' + str(st.pid) if st.running else 'not running'}")
        return 0 if st.running else 1
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipelines.kafka_io import ensure_topics, file_records, publish_records
    from pipelines.publishing import synthetic_records
    from pipelines.specs import spec

    pipeline = spec(args.pipeline)
    topic = args.topic or pipeline.input_topic
    ensure_topics(args.bootstrap, [topic], partitions=args.partitions)
    if args.file is not None:
        records = file_records(Path(args.file), pipeline.decode.key_field)
    else:
        records = synthetic_records(args.pipeline, args.events, args.seed)
    report = publish_records(args.bootstrap, topic, records, rate=args.rate)
    print(f"published {report.sent} records to {topic} in {report.seconds:.2f} s")
    return 0


def _check_models(operator: Any, model_ref: str | None) -> None:
    """Open and close `operator` once: every model it would load is found, verified and fits (`ConfigError`)."""
    from models.exceptions import ModelError
    from operators.contract import OperatorContext
    from operators.exceptions import OperatorError

    try:
        operator.open(OperatorContext(model_ref=model_ref))
    except (ModelError, OperatorError, ValueError) as exc:
        raise ConfigError(f"cannot start: {exc}") from None
    finally:
        operator.close()


def job_fields(args: argparse.Namespace, model_ref: str | None) -> dict[str, Any]:
    """The `JobOptions` fields every job command shares (pipeline, topics, config, checkpoint folder, interval,
    parallelism, managed memory), after refusing a bad config and models that cannot serve it (`ConfigError`)."""
    from pipelines.flink.options import DEFAULT_MANAGED_MEMORY
    from pipelines.infra.home import subdir
    from pipelines.specs import spec

    pipeline = spec(args.pipeline)
    # Refuses a bad config, routes on unknown attributes, and models that are missing, tampered with or do not
    # fit the operator (e.g. k above the model's) before Flink starts.
    config = pipeline.load_config(Path(args.config) if args.config else None)
    _check_models(pipeline.operator_from_config(config), model_ref)
    topics = config.topics if args.config else None
    return {
        "pipeline": args.pipeline,
        "bootstrap": args.bootstrap,
        "input_topic": args.input_topic or (topics.input if topics else pipeline.input_topic),
        "output_topic": args.output_topic or (topics.output if topics else pipeline.output_topic),
        "dlq_topic": args.dlq_topic or (topics.dlq if topics else pipeline.dlq_topic),
        "config_path": Path(args.config).resolve() if args.config else None,
        "checkpoint_dir": Path(args.checkpoint_dir) if args.checkpoint_dir else subdir("checkpoints", args.pipeline),
        "checkpoint_interval_ms": args.checkpoint_interval,
        "parallelism": args.parallelism,
        "managed_memory": getattr(args, "managed_memory", DEFAULT_MANAGED_MEMORY),
        "allow_non_restored_state": getattr(args, "allow_non_restored_state", False),
    }


def _job_options(args: argparse.Namespace) -> object:
    from pipelines.flink.options import JobOptions

    return JobOptions(
        **job_fields(args, args.model),
        bounded=args.bounded,
        model_ref=args.model,  # pins every event; otherwise the config's model and routes decide
        delivery=args.delivery,
        transactional_id_prefix=args.transactional_id_prefix,
        state_changelog=args.state_changelog,
    )


def _run_job(options: object, restore: Path | None) -> int:
    from pipelines.flink import job
    from pipelines.flink.options import JobOptions
    from pipelines.kafka_io import ensure_topics

    assert isinstance(options, JobOptions)
    topics = [options.input_topic, options.output_topic, options.dlq_topic]
    ensure_topics(options.bootstrap, topics + ([options.state_changelog] if options.state_changelog else []))
    origin = f"restoring {restore}" if restore else f"fresh state, input from {options.start_from}"
    print(
        f"running {options.pipeline}: {options.input_topic} -> {options.output_topic} "
        f"(dead letters: {options.dlq_topic}; {'bounded' if options.bounded else 'unbounded'}, "
        f"{options.delivery}, {origin}, checkpoints in {options.checkpoint_dir})",
        flush=True,
    )
    done = None
    on_started = None
    if options.bounded:
        from pipelines.flink.bounded import reached, record_end_offsets, saved_end_offsets
        from pipelines.kafka_io import end_offsets

        saved = saved_end_offsets(restore, options.checkpoint_dir) if restore is not None else None
        ends = saved if saved is not None else end_offsets(options.bootstrap, options.input_topic)
        if restore is not None:  # FLINK-31006: a restored bounded Kafka source never finishes by itself
            done = reached(options, ends)

        def on_started(client: Any) -> None:  # the next restore of this job's checkpoints finds its ends here
            record_end_offsets(options.checkpoint_dir, str(client.get_job_id()), ends)

    try:
        job.run(options, restore_path=str(restore) if restore else None, done=done, on_started=on_started)
    except Exception as exc:
        if restore is not None and UNMAPPED_STATE in str(exc):
            raise ConfigError(
                f"cannot restore {restore}: it holds state of an operator this job does not have (a checkpoint "
                "of an earlier job graph, e.g. from before streamscore read the key in the source query). Add "
                "--allow-non-restored-state to keep the keyed state and continue the input from the offsets the "
                "consumer group committed, or --fresh to start without it"
            ) from None
        raise
    print("job finished", flush=True)
    # The embedded JVM is gone once the job ends; skip interpreter finalisation, where py4j would log
    # errors for every Java object it can no longer release.
    sys.stderr.flush()
    os._exit(0)


#: What Flink says when a checkpoint holds state for an operator the job graph no longer has.
UNMAPPED_STATE = "Cannot map checkpoint/savepoint state for operator"


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.flink.checkpoints import latest_checkpoint
    from pipelines.flink.options import JobOptions

    options = _job_options(args)
    assert isinstance(options, JobOptions)
    latest = None if args.fresh else latest_checkpoint(options.checkpoint_dir)
    return _run_job(options, latest.path if latest else None)


def _cmd_replay(args: argparse.Namespace) -> int:
    import dataclasses
    from datetime import datetime

    from pipelines.flink.checkpoints import resolve_checkpoint
    from pipelines.flink.options import JobOptions

    options = _job_options(args)
    assert isinstance(options, JobOptions)
    restore: Path | None = None
    changes: dict[str, Any] = {
        "checkpoint_dir": options.checkpoint_dir / "replays" / time.strftime("%Y%m%d-%H%M%S"),
        "transactional_id_prefix": args.transactional_id_prefix or f"{options.id_prefix}-replay",
    }
    if args.from_checkpoint or args.from_savepoint:
        restore = resolve_checkpoint(args.from_checkpoint or args.from_savepoint, options.checkpoint_dir)
    elif args.from_timestamp:
        try:
            moment = datetime.fromisoformat(args.from_timestamp)
        except ValueError:
            raise ConfigError(f"--from-timestamp must be ISO 8601, got {args.from_timestamp!r}") from None
        changes |= {"start_from": "timestamp", "start_timestamp_ms": int(moment.timestamp() * 1000)}
    else:
        changes |= {"start_from": "specific-offsets", "start_offsets": args.from_offsets}
    return _run_job(dataclasses.replace(options, **changes), restore)


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from pipelines.flink.checkpoints import list_checkpoints, list_savepoints
    from pipelines.infra.home import subdir

    folder = Path(args.checkpoint_dir) if args.checkpoint_dir else subdir("checkpoints", args.pipeline)
    found = [(c, f"chk-{c.number}") for c in list_checkpoints(folder)]
    found += [(s, "savepoint") for s in list_savepoints(folder)]
    if not found:
        print(f"no completed checkpoints or savepoints under {folder}")
        return 1
    for checkpoint, kind in sorted(found, key=lambda item: item[0].completed_at):  # the last one `run` resumes from
        print(f"{checkpoint.completed_at.isoformat(timespec='seconds')}  job {checkpoint.job_id}  "
              f"{kind}  {checkpoint.path}")
    return 0


def _cmd_consume(args: argparse.Namespace) -> int:
    from pipelines.kafka_io import consume

    out = sys.stdout
    for record in consume(args.bootstrap, args.topic, max_records=args.max, timeout_s=args.timeout):
        out.write(record.value.decode("utf-8", errors="backslashreplace") + "\n")
    out.flush()
    return 0


def _state_dir(args: argparse.Namespace) -> Path:
    from pipelines.infra.home import subdir

    return Path(args.state_dir) if args.state_dir else subdir("state") / args.pipeline


def _cmd_state_sync(args: argparse.Namespace) -> int:
    from pipelines.changelog import sync
    from pipelines.specs import spec

    topic = args.changelog_topic or f"{args.pipeline}.state-changelog"
    state_type = spec(args.pipeline).state_codec.value_type  # type: ignore[attr-defined]
    applied, skipped = sync(args.bootstrap, topic, _state_dir(args), state_type, timeout_s=args.timeout)
    print(f"synced {topic} into {_state_dir(args)}: {applied} versions applied, {skipped} already present")
    return 0


def _cmd_state_get(args: argparse.Namespace) -> int:
    from datetime import datetime

    import msgspec

    from pipelines.changelog import read

    as_of_ms = None
    if args.as_of:
        try:
            as_of_ms = int(datetime.fromisoformat(args.as_of).timestamp() * 1000)
        except ValueError:
            raise ConfigError(
                f"--as-of must be an ISO time like 2026-01-01T10:02:00+00:00, got {args.as_of!r}"
            ) from None
    versions = read(_state_dir(args), args.key, version=args.version, as_of_ms=as_of_ms, history=args.history)
    if not versions:
        print(f"no state for key {args.key!r} matching the request", file=sys.stderr)
        return 1
    for version in versions:
        print(msgspec.json.encode({"key": args.key, **msgspec.structs.asdict(version)}).decode())
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from pipelines.offline import score_file

    config = Path(args.config) if args.config else None
    if config is not None:
        from pipelines.config import load_config

        load_config(config, pipeline=args.pipeline)
    out = open(args.out, "w") if args.out else sys.stdout  # noqa: SIM115 - closed below when it is a file
    letters = open(args.dead_letters, "w") if args.dead_letters else sys.stderr  # noqa: SIM115
    try:
        results, bad = score_file(args.pipeline, Path(args.file), out, letters, config=config, model_ref=args.model)
    finally:
        for stream in (out, letters):
            if stream not in (sys.stdout, sys.stderr):
                stream.close()
    print(f"scored {results} results, {bad} dead letters", file=sys.stderr)
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from collections import Counter

    import msgspec

    from operators.dead_letter import DeadLetter
    from pipelines.kafka_io import consume
    from pipelines.specs import spec

    topic = args.topic or spec(args.pipeline).dlq_topic
    counts: Counter[str] = Counter()
    for record in consume(args.bootstrap, topic, max_records=args.max, timeout_s=args.timeout):
        letter = msgspec.json.decode(record.value, type=DeadLetter)
        if args.action == "tail":
            print(record.value.decode())
        counts[letter.reason] += 1
    if args.action == "count":
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            print(f"{count:8d}  {reason}")
        print(f"{sum(counts.values()):8d}  total ({topic})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(port=args.port, latency_events=args.latency_events, burst_events=args.events,
                    rate=args.rate, seed=args.seed)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", choices=PIPELINES, help="which pipeline")
    parser.add_argument("--config", help="pipeline YAML (topics, model, rules, thresholds, k ...); validated at start")
    parser.add_argument("--input-topic")
    parser.add_argument("--output-topic")
    parser.add_argument("--dlq-topic")
    parser.add_argument("--checkpoint-dir", help="default: $STREAMSCORE_HOME/checkpoints/PIPELINE")
    parser.add_argument("--checkpoint-interval", type=int, default=1000, metavar="MS",
                        help="checkpoint interval in ms; with exactly-once, results become visible per checkpoint")
    parser.add_argument("--bounded", action="store_true",
                        help="process what is in the input topic now, then finish with a final checkpoint")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--managed-memory", default=DEFAULT_MANAGED_MEMORY, metavar="SIZE",
                        help="Flink managed memory (RocksDB cache and write buffers), default %(default)s")
    parser.add_argument("--model", help="pin a model version NAME@V (default: the registry's current)")
    parser.add_argument("--delivery", choices=["exactly-once", "at-least-once"], default="exactly-once")
    parser.add_argument("--state-changelog", metavar="TOPIC",
                        help="also publish every state version to TOPIC (read back with `streamscore state`)")
    parser.add_argument("--transactional-id-prefix",
                        help="default: streamscore-PIPELINE-OUTPUT_TOPIC (unique per concurrently running job)")
    parser.add_argument("--allow-non-restored-state", action="store_true",
                        help="restore a checkpoint of an earlier job graph: state of operators this job no longer "
                        "has is dropped (keyed state is kept; the input continues from committed offsets)")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `streamscore` command."""
    root = argparse.ArgumentParser(prog="streamscore", description=__doc__)
    root.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP,
                      help="Kafka bootstrap servers (env STREAMSCORE_BOOTSTRAP; default %(default)s)")
    commands = root.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="the project's single-node KRaft broker")
    kafka.add_argument("action", choices=["up", "down", "status"])
    kafka.add_argument("--port", type=int, default=9092)
    kafka.set_defaults(func=_cmd_kafka)

    publish = commands.add_parser("publish", help="publish synthetic events or a JSONL file")
    publish.add_argument("pipeline", choices=PIPELINES)
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=int, help="number of seeded synthetic events")
    source.add_argument("--file", help="JSONL file; each line is sent as-is")
    publish.add_argument("--seed", type=int, default=7)
    publish.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    publish.add_argument("--topic", help="default: the pipeline's input topic")
    publish.add_argument("--partitions", type=int, default=1, help="partitions if the topic is created")
    publish.set_defaults(func=_cmd_publish)

    run = commands.add_parser("run", help="run a pipeline's streaming job on the embedded Flink mini-cluster")
    _add_job_options(run)
    run.add_argument("--fresh", action="store_true",
                     help="ignore retained checkpoints (default: resume from the newest one)")
    run.set_defaults(func=_cmd_run)

    replay = commands.add_parser("replay", help="re-run a pipeline from a checkpoint, savepoint, time or offsets")
    _add_job_options(replay)
    origin = replay.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from-checkpoint", metavar="latest|PATH")
    origin.add_argument("--from-savepoint", metavar="PATH")
    origin.add_argument("--from-timestamp", metavar="ISO-TIME", help="fresh state, input from this time")
    origin.add_argument("--from-offsets", metavar="SPEC",
                        help="fresh state; e.g. partition:0,offset:42;partition:1,offset:7")
    replay.set_defaults(func=_cmd_replay)

    checkpoints = commands.add_parser("checkpoints", help="list a pipeline's retained checkpoints")
    checkpoints.add_argument("action", choices=["list"])
    checkpoints.add_argument("pipeline", choices=PIPELINES)
    checkpoints.add_argument("--checkpoint-dir", help="default: $STREAMSCORE_HOME/checkpoints/PIPELINE")
    checkpoints.set_defaults(func=_cmd_checkpoints)

    consume = commands.add_parser("consume", help="print a topic's committed records as JSON lines")
    consume.add_argument("topic")
    consume.add_argument("--max", type=int, help="stop after N records")
    consume.add_argument("--timeout", type=float, default=10.0, help="stop after S seconds without a record")
    consume.set_defaults(func=_cmd_consume)

    score = commands.add_parser("score", help="run a pipeline's operator chain over a JSONL file (offline)")
    score.add_argument("pipeline", choices=PIPELINES)
    score.add_argument("--file", required=True, help="JSONL events, one per line")
    score.add_argument("--out", help="results JSONL (default: stdout)")
    score.add_argument("--dead-letters", help="dead letters JSONL (default: stderr)")
    score.add_argument("--config", help="pipeline YAML, as for `run`")
    score.add_argument("--model", help="pin a model version NAME@V")
    score.set_defaults(func=_cmd_score)

    dlq = commands.add_parser("dlq", help="read a pipeline's dead letters")
    dlq.add_argument("action", choices=["tail", "count"])
    dlq.add_argument("--pipeline", choices=PIPELINES, default="risk")
    dlq.add_argument("--topic", help="default: the pipeline's dead-letter topic")
    dlq.add_argument("--max", type=int, help="stop after N records")
    dlq.add_argument("--timeout", type=float, default=5.0, help="stop after S seconds without a record")
    dlq.set_defaults(func=_cmd_dlq)

    state = commands.add_parser("state", help="read job state from outside the job (via its state changelog)")
    state_commands = state.add_subparsers(dest="state_command", required=True)
    sync_cmd = state_commands.add_parser("sync", help="materialise a state changelog topic into a local store")
    sync_cmd.add_argument("pipeline", choices=PIPELINES)
    sync_cmd.add_argument("--changelog-topic", help="default: PIPELINE.state-changelog")
    sync_cmd.add_argument("--state-dir", help="default: $STREAMSCORE_HOME/state/PIPELINE")
    sync_cmd.add_argument("--timeout", type=float, default=5.0, help="stop after S seconds without a record")
    sync_cmd.set_defaults(func=_cmd_state_sync)
    get_cmd = state_commands.add_parser("get", help="print a key's state as JSON")
    get_cmd.add_argument("pipeline", choices=PIPELINES)
    get_cmd.add_argument("key")
    which = get_cmd.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="exactly this version")
    which.add_argument("--as-of", help="the state as of an event time (ISO 8601)")
    which.add_argument("--history", type=int, metavar="N", help="the newest N versions")
    get_cmd.add_argument("--state-dir", help="default: $STREAMSCORE_HOME/state/PIPELINE")
    get_cmd.set_defaults(func=_cmd_state_get)

    demo = commands.add_parser("demo", help="broker + risk job + synthetic load, then a summary")
    demo.add_argument("--port", type=int, default=9092)
    demo.add_argument("--events", type=int, default=20000, help="events in the throughput burst")
    demo.add_argument("--latency-events", type=int, default=2000, help="events in the paced latency phase")
    demo.add_argument("--rate", type=float, default=500.0, help="events/s in the latency phase")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)

    try:
        from pipelines.cli_models import add_models_commands

        add_models_commands(commands)
        from pipelines.cli_savepoint import add_savepoint_commands

        add_savepoint_commands(commands)
    except ImportError as exc:  # the models CLI needs nothing optional; an ImportError here is a bug
        raise SystemExit(f"streamscore: cannot load the models commands: {exc}") from exc
    from pipelines.cli_backtest import add_backtest_command

    add_backtest_command(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamscore` console script."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PipelineError as exc:
        print(f"streamscore: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
