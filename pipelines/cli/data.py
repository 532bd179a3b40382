"""Commands that move records: `publish`, `consume`, `score` (offline), `dlq`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.exceptions import UsageError
from pipelines.registry import pipeline_names


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipelines.kafka.clients import ensure_topics, file_records, publish_records
    from pipelines.kafka.publishing import synthetic_records
    from pipelines.registry import get

    if args.scenario is not None and args.file is not None:
        raise UsageError("--scenario shapes synthetic events (--events); a --file is sent as it is")
    if args.pipeline == "feedback":
        from pipelines.loop.feedback import feedback_topic, synthetic_label_records

        if args.of not in pipeline_names():
            raise UsageError(f"publish feedback needs the pipeline whose events the labels are of: one of "
                             f"{', '.join(pipeline_names())} (got {args.of!r})")
        topic = args.topic or feedback_topic(args.of)
        records = file_records(Path(args.file), "event_id") if args.file is not None else \
            synthetic_label_records(args.of, args.events, args.seed, args.scenario)
    else:
        if args.of is not None:
            raise UsageError(f"unexpected argument {args.of!r} (only `publish feedback PIPELINE` takes two)")
        pipeline = get(args.pipeline)
        topic = args.topic or pipeline.topics.input
        records = file_records(Path(args.file), pipeline.key_field) if args.file is not None else \
            synthetic_records(args.pipeline, args.events, args.seed, args.scenario)
    ensure_topics(args.bootstrap, [topic], partitions=args.partitions)
    from pipelines.cli.progress import Progress

    shown = Progress(f"publishing to {topic}", None if args.file is not None else args.events, "records")
    report = publish_records(args.bootstrap, topic, records, rate=args.rate, progress=shown.update)
    print(f"published {report.sent} records to {topic} in {report.seconds:.2f} s")
    return 0


def _cmd_consume(args: argparse.Namespace) -> int:
    from pipelines.kafka.clients import consume

    out = sys.stdout
    for record in consume(args.bootstrap, args.topic, max_records=args.max, timeout_s=args.timeout):
        out.write(record.value.decode("utf-8", errors="backslashreplace") + "\n")
    out.flush()
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from pipelines.runtimes.offline import score_file

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
    from pipelines.kafka.clients import consume
    from pipelines.registry import get

    if args.topic is None and args.pipeline is None:
        raise UsageError(f"dlq: give --pipeline ({', '.join(pipeline_names())}) or --topic")
    topic = args.topic or get(args.pipeline).topics.dlq
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


def add_data_commands(commands: Any) -> None:
    """Add `publish`, `consume`, `score` and `dlq`."""
    publish = commands.add_parser("publish", help="publish synthetic events or labels, or a JSONL file")
    publish.add_argument("pipeline", choices=[*pipeline_names(), "feedback"],
                         help="whose events (and default topic); `feedback PIPELINE`: labels of its events")
    publish.add_argument("of", nargs="?", metavar="PIPELINE",
                         help="after `feedback`: whose events the labels are of (default topic PIPELINE.feedback; "
                         "the same --events/--seed as the events)")
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", type=int, help="number of seeded synthetic events")
    source.add_argument("--file", help="JSONL file; each line is sent as-is")
    publish.add_argument("--seed", type=int, default=7, help="seed of the synthetic events, default %(default)s")
    publish.add_argument("--scenario", help="a variant of the synthetic stream, its drift from 40 %% of its time span "
                         "on (risk: emerging-fraud, a new fraud pattern; reco: new-season, new goes-with items); "
                         "give the same to `publish feedback`")
    publish.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    publish.add_argument("--topic", help="default: the pipeline's input topic")
    publish.add_argument("--partitions", type=int, default=1, help="partitions if the topic is created")
    publish.set_defaults(func=_cmd_publish)

    consume = commands.add_parser("consume", help="print a topic's committed records as JSON lines")
    consume.add_argument("topic", help="the topic to print (read_committed)")
    consume.add_argument("--max", type=int, help="stop after N records")
    consume.add_argument("--timeout", type=float, default=10.0, help="stop after S seconds without a record")
    consume.set_defaults(func=_cmd_consume)

    score = commands.add_parser("score", help="run a pipeline's operator chain over a JSONL file (offline)")
    score.add_argument("pipeline", choices=pipeline_names(), help="which pipeline scores the file")
    score.add_argument("--file", required=True, help="JSONL events, one per line")
    score.add_argument("--out", help="results JSONL (default: stdout)")
    score.add_argument("--dead-letters", help="dead letters JSONL (default: stderr)")
    score.add_argument("--config", help="pipeline YAML, as for `run`")
    score.add_argument("--model", help="pin a model version NAME@V")
    score.set_defaults(func=_cmd_score)

    dlq = commands.add_parser("dlq", help="read a pipeline's dead letters")
    dlq.add_argument("action", choices=["tail", "count"], help="print the dead letters, or count them by reason")
    dlq.add_argument("--pipeline", choices=pipeline_names(), help="whose dead-letter topic (or give --topic)")
    dlq.add_argument("--topic", help="default: the pipeline's dead-letter topic")
    dlq.add_argument("--max", type=int, help="stop after N records")
    dlq.add_argument("--timeout", type=float, default=5.0, help="stop after S seconds without a record")
    dlq.set_defaults(func=_cmd_dlq)
