"""`streamscore dataset build`: a point-in-time training set from results, feedback labels and the state
changelog (risk, `pipelines.datasets`) or the clicks (reco, `pipelines.reco_dataset`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _cmd_dataset_build(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from pipelines.cli.state import _iso_ms
    from pipelines.datasets import DatasetReport, build_risk_dataset
    from pipelines.exceptions import UsageError
    from pipelines.feedback import feedback_topic
    from pipelines.infra.home import subdir
    from pipelines.kafka.clients import check_reachable
    from pipelines.reco_dataset import RecoDatasetReport, build_reco_dataset
    from pipelines.registry import get

    until_ms = _iso_ms(args.until, "--until")
    check_reachable(args.bootstrap)
    stamp = datetime.fromtimestamp(until_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else subdir("datasets") / f"{args.pipeline}-until-{stamp}.parquet"
    feedback = args.feedback or feedback_topic(args.pipeline)
    topics = get(args.pipeline).topics
    if args.pipeline == "reco":
        if args.changelog is not None:
            raise UsageError("--changelog is for risk (reco rows take the clicks from --events)")
        report: DatasetReport = build_reco_dataset(
            args.bootstrap, events_topic=args.events or topics.input, results_topic=args.results or topics.output,
            feedback_topic=feedback, until_ms=until_ms, out=out, dlq_topic=args.dlq or f"{feedback}.dlq")
    else:
        if args.events is not None:
            raise UsageError("--events is for reco (risk rows take the features from --changelog)")
        report = build_risk_dataset(
            args.bootstrap, results_topic=args.results or topics.output, feedback_topic=feedback,
            changelog_topic=args.changelog or f"{args.pipeline}.state-changelog", until_ms=until_ms, out=out,
            dlq_topic=args.dlq or f"{feedback}.dlq",
        )
    print(f"wrote {report.rows:,} rows ({report.positives:,} labelled 1) to {out}")
    print(f"  results up to --until: {report.results:,} ({report.unlabelled_results:,} without a label yet); "
          f"labels read: {report.labels:,}, known after --until: {report.late_labels:,}, duplicates ignored: "
          f"{report.duplicate_labels:,}, of unknown events ignored: {report.unknown_labels:,}, malformed (dead "
          f"letters): {report.malformed_labels:,}")
    if isinstance(report, RecoDatasetReport):
        print(f"  {report.sessions:,} sessions; results without their click on the events topic: "
              f"{report.missing_events:,}")
    else:
        print(f"  results without their state version: {report.missing_features:,}")
    return 0


def add_dataset_command(commands: Any) -> None:
    """Add `dataset build`."""
    dataset = commands.add_parser("dataset", help="point-in-time training sets from results and feedback")
    actions = dataset.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="join feedback labels to results, features as the model saw them")
    build.add_argument("pipeline", choices=["risk", "reco"],
                       help="whose results (risk: transactions and chargebacks; reco: clicks and purchases)")
    build.add_argument("--until", required=True, metavar="ISO",
                       help="results up to this event time, labels known by it (e.g. 2026-01-20T00:00:00+00:00)")
    build.add_argument("--results", metavar="TOPIC", help="the job's results (default: the config's output topic)")
    build.add_argument("--feedback", metavar="TOPIC", help="labels (default: PIPELINE.feedback)")
    build.add_argument("--changelog", metavar="TOPIC",
                       help="risk: the job's --state-changelog topic, where the scored features are "
                       "(default: risk.state-changelog)")
    build.add_argument("--events", metavar="TOPIC",
                       help="reco: the job's input topic, the sessions' clicks (default: the config's input topic)")
    build.add_argument("--dlq", metavar="TOPIC", help="dead letters of malformed labels (default: FEEDBACK.dlq)")
    build.add_argument("--out", metavar="FILE",
                       help="the Parquet file (default: $STREAMSCORE_HOME/datasets/PIPELINE-until-TIME.parquet)")
    build.set_defaults(func=_cmd_dataset_build)
