"""Commands that run a pipeline's streaming job: `run`, `replay`, `checkpoints`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.cli.common import add_job_options, check_runtime_options, job_fields
from pipelines.exceptions import ConfigError, UsageError
from pipelines.registry import pipeline_names


def _job_options(args: argparse.Namespace) -> object:
    from pipelines.runtimes.flink.options import JobOptions

    return JobOptions(
        **job_fields(args, args.model),
        bounded=args.bounded,
        model_ref=args.model,  # pins every event; otherwise the config's model and routes decide
        delivery=args.delivery,
        transactional_id_prefix=args.transactional_id_prefix,
        state_changelog=args.state_changelog,
    )


def _run_job(options: object, restore: Path | None, *, attach: bool = True) -> int:
    from pipelines.infra.jvm_temp import release as release_jvm_temp
    from pipelines.kafka.clients import ensure_topics
    from pipelines.runtimes.flink import job
    from pipelines.runtimes.flink.options import JobOptions

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
    stop_progress: Any = None
    if options.bounded:
        from pipelines.kafka.clients import end_offsets
        from pipelines.runtimes.flink.bounded import reached, record_end_offsets, saved_end_offsets

        saved = saved_end_offsets(restore, options.checkpoint_dir) if restore is not None else None
        ends = saved if saved is not None else end_offsets(options.bootstrap, options.input_topic)
        if restore is not None:  # FLINK-31006: a restored bounded Kafka source never finishes by itself
            done = reached(options, ends)

        def on_started(client: Any) -> None:  # the next restore of this job's checkpoints finds its ends here
            record_end_offsets(options.checkpoint_dir, str(client.get_job_id()), ends)

        stop_progress = _follow_bounded(options, ends)
    try:
        job.run(options, restore_path=str(restore) if restore else None, done=done, on_started=on_started,
                attach=attach)
    except Exception as exc:
        if restore is not None and UNMAPPED_STATE in str(exc):
            raise ConfigError(
                f"cannot restore {restore}: it holds state of an operator this job does not have (a checkpoint "
                "of an earlier job graph, e.g. from before streamscore read the key in the source query). Add "
                "--allow-non-restored-state to keep the keyed state and continue the input from the offsets the "
                "consumer group committed, or --fresh to start without it"
            ) from None
        raise
    finally:
        if stop_progress is not None:
            stop_progress.set()
    if options.jobmanager is None or attach:
        print("job finished", flush=True)
    # The embedded JVM is gone once the job ends; skip interpreter finalisation, where py4j would log
    # errors for every Java object it can no longer release.
    sys.stderr.flush()
    release_jvm_temp()
    os._exit(0)


def _follow_bounded(options: Any, ends: dict[int, int]) -> Any:
    """Report a bounded run's progress (input offsets its group committed / the ends it stops at) on stderr."""
    import threading

    from pipelines.cli.progress import Progress, follow
    from pipelines.kafka.clients import committed_offsets

    def committed() -> int:
        offsets = committed_offsets(options.bootstrap, options.id_prefix, options.input_topic, ends)
        return sum(min(max(offsets.get(p, 0), 0), end) for p, end in ends.items())

    stop = threading.Event()
    follow(Progress(f"{options.pipeline} (bounded)", sum(ends.values()) or None, "records"), committed, stop)
    return stop


#: What Flink says when a checkpoint holds state for an operator the job graph no longer has.
UNMAPPED_STATE = "Cannot map checkpoint/savepoint state for operator"


def _faust_options(args: argparse.Namespace, **changes: Any) -> object:
    from pipelines.infra.home import subdir
    from pipelines.runtimes.faust.options import FaustOptions, default_changelog, default_group
    from pipelines.runtimes.faust.routing import repartition_topic

    fields = job_fields(args, args.model)
    group = args.group_id or default_group(args.pipeline, fields["input_topic"], fields["output_topic"])
    options = FaustOptions(
        pipeline=args.pipeline, bootstrap=args.bootstrap, input_topic=fields["input_topic"],
        output_topic=fields["output_topic"], dlq_topic=fields["dlq_topic"],
        state_dir=Path(args.state_dir) if args.state_dir else subdir("faust", args.pipeline),
        changelog_topic=args.state_changelog or default_changelog(args.pipeline, fields["output_topic"]),
        group_id=group, config_path=fields["config_path"], model_ref=args.model, delivery=args.delivery,
        bounded=args.bounded, batch_size=args.batch_size, batch_window_ms=args.batch_window,
        transactional_id_prefix=args.transactional_id_prefix, metrics_port=args.metrics_port,
        repartition_topic=None if getattr(args, "input_keyed", False) else repartition_topic(group),
    )
    import dataclasses

    return dataclasses.replace(options, **changes) if changes else options


def _run_faust(given: object) -> int:
    import dataclasses

    from pipelines.kafka.clients import end_offsets, ensure_topics
    from pipelines.runtimes.faust import worker
    from pipelines.runtimes.faust.options import FaustOptions

    assert isinstance(given, FaustOptions)
    options = given
    ensure_topics(options.bootstrap, [options.input_topic, options.output_topic, options.dlq_topic])
    partitions = len(end_offsets(options.bootstrap, options.input_topic))
    if options.repartition_topic is not None and partitions == 1:  # one partition: one state per key already
        options = dataclasses.replace(options, repartition_topic=None)
    if options.repartition_topic is not None:
        ensure_topics(options.bootstrap, [options.repartition_topic], partitions=partitions)
    ensure_topics(options.bootstrap, [options.changelog_topic], partitions=partitions)
    print(
        f"running {options.pipeline} on faust: {options.input_topic} -> {options.output_topic} "
        f"(dead letters: {options.dlq_topic}; state changelog: {options.changelog_topic}; "
        f"{'bounded' if options.bounded else 'unbounded'}, {options.delivery}, group {options.group_id}, "
        f"batches of <= {options.batch_size}, state in {options.state_dir}"
        + (f"; repartitioned by key through {options.repartition_topic}" if options.repartition_topic else "")
        + ")",
        flush=True,
    )
    counts = worker.run(options)
    print("worker finished: " + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.runtimes.flink.options import JobOptions
    from pipelines.runtimes.flink.resume import resume_point

    check_runtime_options(args)
    if args.runtime == "faust":
        return _run_faust(_faust_options(args))
    options = _job_options(args)
    assert isinstance(options, JobOptions)
    restore = None if args.fresh else resume_point(options)
    return _run_job(options, restore, attach=args.attach)


def _cmd_replay(args: argparse.Namespace) -> int:
    import dataclasses
    from datetime import datetime

    from pipelines.runtimes.flink.checkpoints import resolve_checkpoint
    from pipelines.runtimes.flink.options import JobOptions

    check_runtime_options(args)
    if args.runtime == "faust":
        return _replay_faust(args)
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
            raise UsageError(f"--from-timestamp must be ISO 8601, got {args.from_timestamp!r}") from None
        changes |= {"start_from": "timestamp", "start_timestamp_ms": int(moment.timestamp() * 1000)}
    else:
        changes |= {"start_from": "specific-offsets", "start_offsets": args.from_offsets}
    return _run_job(dataclasses.replace(options, **changes), restore, attach=args.attach)


def _replay_faust(args: argparse.Namespace) -> int:
    from datetime import datetime

    from pipelines.runtimes.faust.options import FaustOptions
    from pipelines.runtimes.faust.starts import parse_offsets, start_group

    if args.from_checkpoint or args.from_savepoint:
        raise ConfigError(
            "the faust runtime keeps no checkpoints or savepoints (its state is the changelog and the committed "
            "offsets): replay it --from-timestamp or --from-offsets, or replay the Flink job's checkpoints with "
            "--runtime flink"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = _faust_options(args)
    assert isinstance(base, FaustOptions)
    options = _faust_options(
        args, state_dir=base.state_dir / "replays" / stamp, group_id=f"{base.group_id}-replay-{stamp}",
        transactional_id_prefix=args.transactional_id_prefix or f"{base.id_prefix}-replay-{stamp}",
    )
    assert isinstance(options, FaustOptions)
    if args.from_timestamp:
        try:
            moment = int(datetime.fromisoformat(args.from_timestamp).timestamp() * 1000)
        except ValueError:
            raise UsageError(f"--from-timestamp must be ISO 8601, got {args.from_timestamp!r}") from None
        starts = start_group(options.bootstrap, options.group_id, options.input_topic, timestamp_ms=moment)
    else:
        starts = start_group(options.bootstrap, options.group_id, options.input_topic,
                             offsets=parse_offsets(args.from_offsets))
    print(f"replay group {options.group_id} starts at offsets {starts}", flush=True)
    return _run_faust(options)


def _cmd_checkpoints(args: argparse.Namespace) -> int:
    from pipelines.infra.home import subdir
    from pipelines.runtimes.flink.checkpoints import list_checkpoints, list_savepoints

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


def add_job_commands(commands: Any) -> None:
    """Add `run`, `replay` and `checkpoints`."""
    run = commands.add_parser("run", help="run a pipeline's streaming job on the embedded Flink mini-cluster")
    add_job_options(run)
    run.add_argument("--fresh", action="store_true",
                     help="ignore retained checkpoints and start with empty state (default: resume from the newest "
                          "one; without one, a run whose consumer group committed offsets stops: its state is lost)")
    run.set_defaults(func=_cmd_run)

    replay = commands.add_parser("replay", help="re-run a pipeline from a checkpoint, savepoint, time or offsets")
    add_job_options(replay)
    origin = replay.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from-checkpoint", metavar="latest|PATH",
                        help="restore this retained checkpoint (latest: the newest) and re-run from its offsets")
    origin.add_argument("--from-savepoint", metavar="PATH", help="restore this savepoint and go on from its offsets")
    origin.add_argument("--from-timestamp", metavar="ISO-TIME", help="fresh state, input from this time")
    origin.add_argument("--from-offsets", metavar="SPEC",
                        help="fresh state; e.g. partition:0,offset:42;partition:1,offset:7")
    replay.set_defaults(func=_cmd_replay)

    checkpoints = commands.add_parser("checkpoints", help="list a pipeline's retained checkpoints")
    checkpoints.add_argument("action", choices=["list"], help="list them, oldest first")
    checkpoints.add_argument("pipeline", choices=pipeline_names(), help="whose checkpoints")
    checkpoints.add_argument("--checkpoint-dir", help="default: $STREAMSCORE_HOME/checkpoints/PIPELINE")
    checkpoints.set_defaults(func=_cmd_checkpoints)
