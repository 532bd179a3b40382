"""`streamscore dataset build PIPELINE`: a point-in-time training set from results and feedback labels, with what
else the pipeline's rows need (`LoopSpec.build_dataset`: risk's scored features from the state changelog, reco's
clicks from the input topic)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.registry import loop_pipelines


def _cmd_dataset_build(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pipelines.cli.state import _iso_ms
    from pipelines.exceptions import UsageError
    from pipelines.infra.home import subdir
    from pipelines.kafka.clients import check_reachable
    from pipelines.loop.feedback import feedback_topic
    from pipelines.loop.spec import CHANGELOG, EVENTS, DatasetSources
    from pipelines.loop.turn import loop_spec
    from pipelines.registry import get

    spec = loop_spec(args.pipeline)
    for option, value, source in (("--changelog", args.changelog, CHANGELOG), ("--events", args.events, EVENTS)):
        if value is not None and source not in spec.sources:
            raise UsageError(f"{option} is not read by the {args.pipeline} dataset (it reads the results, the "
                             f"feedback{''.join(f' and the {s}' for s in sorted(spec.sources))})")
    until_ms = _iso_ms(args.until, "--until")
    check_reachable(args.bootstrap)
    stamp = datetime.fromtimestamp(until_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else subdir("datasets") / f"{args.pipeline}-until-{stamp}.parquet"
    feedback = args.feedback or feedback_topic(args.pipeline)
    topics = get(args.pipeline).topics
    report = spec.build_dataset(DatasetSources(
        args.bootstrap, results_topic=args.results or topics.output, feedback_topic=feedback, until_ms=until_ms,
        dlq_topic=args.dlq or f"{feedback}.dlq",
        events_topic=(args.events or topics.input) if EVENTS in spec.sources else None,
        changelog_topic=(args.changelog or f"{args.pipeline}.state-changelog") if CHANGELOG in spec.sources else None,
    ), out)
    print(f"wrote {report.rows:,} rows ({report.positives:,} labelled 1) to {out}")
    print(f"  results up to --until: {report.results:,} ({report.unlabelled_results:,} without a label yet); "
          f"labels read: {report.labels:,}, known after --until: {report.late_labels:,}, duplicates ignored: "
          f"{report.duplicate_labels:,}, of unknown events ignored: {report.unknown_labels:,}, malformed (dead "
          f"letters): {report.malformed_labels:,}")
    details = report.details()
    if details:
        print(f"  {details}")
    return 0


def add_dataset_command(commands: Any) -> None:
    """Add `dataset build`."""
    dataset = commands.add_parser("dataset", help="point-in-time training sets from results and feedback")
    actions = dataset.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="join feedback labels to results, features as the model saw them")
    build.add_argument("pipeline", choices=loop_pipelines(), help="whose results (the pipelines with a closed loop)")
    build.add_argument("--until", required=True, metavar="ISO",
                       help="results up to this event time, labels known by it (e.g. 2026-01-20T00:00:00+00:00)")
    build.add_argument("--results", metavar="TOPIC", help="the job's results (default: the config's output topic)")
    build.add_argument("--feedback", metavar="TOPIC", help="labels (default: PIPELINE.feedback)")
    build.add_argument("--changelog", metavar="TOPIC",
                       help="a dataset that reads the state changelog (risk's: the scored features): the job's "
                       "--state-changelog topic (default: PIPELINE.state-changelog)")
    build.add_argument("--events", metavar="TOPIC",
                       help="a dataset that reads the input (reco's: the sessions' clicks): the job's input topic "
                       "(default: the config's input topic)")
    build.add_argument("--dlq", metavar="TOPIC", help="dead letters of malformed labels (default: FEEDBACK.dlq)")
    build.add_argument("--out", metavar="FILE",
                       help="the Parquet file (default: $STREAMSCORE_HOME/datasets/PIPELINE-until-TIME.parquet)")
    build.set_defaults(func=_cmd_dataset_build)
