"""`streamscore loop PIPELINE`: dataset -> train -> backtest -> report -> promote if better (`pipelines.loop.turn`),
for the pipelines that declare a closed loop."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.registry import definitions, loop_pipelines


def loop_metrics() -> list[str]:
    """Every metric a loop can decide on, over the pipelines that have one (each pipeline's in its order)."""
    return list(dict.fromkeys(m for d in definitions() if d.loop is not None for m in d.loop.metrics))


def _cmd_loop(args: argparse.Namespace) -> int:
    import time

    from models.registry import ModelRegistry
    from pipelines.cli.state import _iso_ms
    from pipelines.exceptions import UsageError
    from pipelines.infra.home import subdir
    from pipelines.kafka.clients import check_reachable
    from pipelines.loop.feedback import feedback_topic
    from pipelines.loop.request import LoopRequest
    from pipelines.loop.spec import CHANGELOG
    from pipelines.loop.turn import loop_spec, run_loop
    from pipelines.registry import get
    from pipelines.runtimes.flink.options import JobOptions

    if not 0 <= args.margin < 1:
        raise UsageError(f"--margin must be in [0, 1), got {args.margin}")
    if args.changelog is not None and CHANGELOG not in loop_spec(args.pipeline).sources:
        raise UsageError(f"--changelog is for pipelines whose dataset reads the state changelog; {args.pipeline}'s "
                         "does not")
    check_reachable(args.bootstrap)
    spec = get(args.pipeline)
    config = spec.load_config(Path(args.config) if args.config else None)
    production = JobOptions(
        pipeline=args.pipeline, bootstrap=args.bootstrap, input_topic=args.input_topic or config.topics.input,
        output_topic=args.output_topic or config.topics.output, dlq_topic=args.dlq_topic or config.topics.dlq,
        checkpoint_dir=subdir("checkpoints", args.pipeline),
        config_path=Path(args.config).resolve() if args.config else None,
    )
    report_dir = Path(args.report_dir) if args.report_dir else \
        subdir("loops", args.pipeline) / time.strftime("%Y%m%dT%H%M%S")
    report = run_loop(
        LoopRequest(production=production, feedback_topic=args.feedback or feedback_topic(args.pipeline),
                    changelog_topic=args.changelog or f"{args.pipeline}.state-changelog",
                    until_ms=_iso_ms(args.until, "--until"), report_dir=report_dir, metric=args.metric,
                    margin=args.margin, holdout_share=args.holdout_share, seed=args.seed,
                    backtest=not args.no_backtest, from_scratch=args.from_scratch),
        ModelRegistry(),
        echo=lambda line: print(line, flush=True),
    )
    print(f"report: {report_dir / 'loop.json'} {report_dir / 'loop.png'}")
    return 0 if report.promoted or not args.fail_if_kept else 1


def add_loop_command(commands: Any) -> None:
    """Add `loop`."""

    loop = commands.add_parser("loop", help="dataset -> train -> backtest -> promote if the candidate is better")
    loop.add_argument("pipeline", choices=loop_pipelines(), help="which pipeline's model")
    loop.add_argument("--until", required=True, metavar="ISO",
                      help="build the dataset as of this time (results up to it, labels known by it)")
    loop.add_argument("--feedback", metavar="TOPIC", help="labels (default: PIPELINE.feedback)")
    loop.add_argument("--changelog", metavar="TOPIC", help="the production job's --state-changelog topic, for a "
                      "dataset that reads it (default: PIPELINE.state-changelog)")
    loop.add_argument("--config", help="the production job's pipeline YAML (its topics and rules)")
    loop.add_argument("--input-topic", help="the production input (default: the config's)")
    loop.add_argument("--output-topic", help="the production results (default: the config's)")
    loop.add_argument("--dlq-topic", help="the production dead letters (default: the config's)")
    loop.add_argument("--metric", choices=loop_metrics(), default=None,
                      help="what the candidate must improve (" + "; ".join(
                          f"{d.name}: {', '.join(d.loop.metrics)}" for d in definitions() if d.loop is not None)
                      + "), default the first of the pipeline's")
    loop.add_argument("--margin", type=float, default=0.02,
                      help="by how much (absolute) to be promoted, default %(default)s")
    loop.add_argument("--holdout-share", type=float, default=0.2,
                      help="the newest share of the dataset held out for the comparison, default %(default)s")
    loop.add_argument("--seed", type=int, default=1, help="training seed, default %(default)s")
    loop.add_argument("--no-backtest", action="store_true",
                      help="compare offline on the dataset's features only (no shadow job)")
    loop.add_argument("--from-scratch", action="store_true",
                      help="train a new candidate on the dataset instead of fine-tuning production")
    loop.add_argument("--fail-if-kept", action="store_true", help="exit 1 when the candidate is not promoted")
    loop.add_argument("--report-dir", help="default: $STREAMSCORE_HOME/loops/PIPELINE/TIME")
    loop.set_defaults(func=_cmd_loop)
