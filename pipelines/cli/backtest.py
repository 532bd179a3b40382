"""`streamscore backtest PIPELINE --model NAME@V --from-timestamp ISO`: re-score history into a shadow topic
with its own state, then report the differences against production (see `pipelines.backtest.runner`).

`add_backtest_command(subparsers)` adds the command to the `streamscore` sub-parser set.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from pipelines.exceptions import ConfigError
from pipelines.registry import pipeline_names

HELP = """\
Re-score the input from a point in time with model NAME@V as a bounded job with its own state, checkpoint
folder, consumer group and transactional id prefix, writing to a shadow topic; the production job's
checkpoints and topics are only read. Then join the shadow results with the production output topic
(read_committed) on event_id and write report.json and a PNG under --report-dir.

Warm-up: --from-timestamp starts with EMPTY state, so per-key features warm up from that time; events of keys
with earlier history compare like with like only after the warm-up. --from-checkpoint copies production state
from a retained checkpoint instead (read-only; the backtest checkpoints into its own folder). Restoring a
production checkpoint also restores its Kafka sink state: stop the production job first (see
docs/models-and-closed-loop.md).
"""


def _ms(option: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise ConfigError(f"{option} must be an ISO 8601 time like 2026-01-01T10:00:00+00:00, got {text!r}") from None


def _production_options(args: argparse.Namespace) -> object:
    """The production job's options as `run` would build them from the same topic/config options."""
    from pipelines.cli.common import job_fields
    from pipelines.runtimes.flink.options import JobOptions

    return JobOptions(**job_fields(args, args.model))  # the backtest's model is checked against the config too


def _cmd_backtest(args: argparse.Namespace) -> int:
    from pipelines.backtest.runner import BacktestRequest, run_backtest
    from pipelines.runtimes.flink.checkpoints import resolve_checkpoint
    from pipelines.runtimes.flink.options import JobOptions

    production = _production_options(args)
    assert isinstance(production, JobOptions)
    restore = resolve_checkpoint(args.from_checkpoint, production.checkpoint_dir) if args.from_checkpoint else None
    request = BacktestRequest(
        production=production,
        model_ref=args.model,
        from_timestamp_ms=_ms("--from-timestamp", args.from_timestamp),
        from_checkpoint=restore,
        to_timestamp_ms=_ms("--to-timestamp", args.to_timestamp),
        shadow_topic=args.shadow_topic,
        report_dir=Path(args.report_dir) if args.report_dir else None,
        reco_k=args.k,
    )
    outcome = run_backtest(request, echo=lambda line: print(line, flush=True))
    print(outcome.text)
    if args.json:
        print(json.dumps(outcome.summary, indent=2))
    print(f"shadow topic: {outcome.summary['backtest']['shadow_topic']}")
    print(f"report JSON: {outcome.json_path}")
    print(f"report PNG: {outcome.png_path}")
    return 0


def add_backtest_command(commands: argparse._SubParsersAction) -> None:
    """Add `backtest` to the `streamscore` sub-commands."""
    backtest = commands.add_parser(
        "backtest", help="re-score history with another model into a shadow topic and diff it against production",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backtest.add_argument("pipeline", choices=pipeline_names(), help="which pipeline")
    backtest.add_argument("--model", required=True, metavar="NAME@V", help="the model version to try, e.g. risk@2")
    origin = backtest.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from-timestamp", metavar="ISO-TIME",
                        help="empty state, input from this (Kafka record) time; features warm up from here")
    origin.add_argument("--from-checkpoint", metavar="latest|PATH",
                        help="copy production state from this retained checkpoint (read-only) and continue its input")
    backtest.add_argument("--to-timestamp", metavar="ISO-TIME", help="stop before records of this time (default: "
                          "the end of the input when the backtest starts)")
    backtest.add_argument("--shadow-topic", help="default: OUTPUT.backtest.MODEL.SHORT-ID (must be new or empty)")
    backtest.add_argument("--report-dir", help="report, shadow job log and the backtest's own checkpoints "
                          "(default: $STREAMSCORE_HOME/backtests/PIPELINE/RUN-ID)")
    backtest.add_argument("--config", help="pipeline YAML, as for `run` (topics, rules, thresholds)")
    backtest.add_argument("--input-topic", help="the production input topic (default: the config's)")
    backtest.add_argument("--output-topic", help="the PRODUCTION output topic to compare with")
    backtest.add_argument("--dlq-topic", help="the production dead-letter topic (the backtest writes SHADOW.dlq)")
    backtest.add_argument("--checkpoint-dir", help="the PRODUCTION checkpoint folder (only read, for "
                          "--from-checkpoint latest; default: $STREAMSCORE_HOME/checkpoints/PIPELINE)")
    backtest.add_argument("--checkpoint-interval", type=int, default=1000, metavar="MS",
                          help="the shadow job's checkpoint interval, default %(default)s ms")
    backtest.add_argument("--parallelism", type=int, default=1, help="the shadow job's parallelism")
    backtest.add_argument("--k", type=int, default=10, help="reco: k of overlap@k (default 10)")
    backtest.add_argument("--json", action="store_true", help="also print the JSON summary")
    backtest.set_defaults(func=_cmd_backtest)
