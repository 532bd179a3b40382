"""`streamscore drift PIPELINE`: how the job's inputs and scores moved between a reference window and the current
one (`LoopSpec.measure_drift`; risk: PSI of the scored features and the score, `pipelines.risk.drift`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.registry import definitions


def _window(text: str, option: str) -> tuple[int, int]:
    from pipelines.cli.state import _iso_ms
    from pipelines.exceptions import UsageError

    start, sep, end = text.partition("/")
    if not sep:
        raise UsageError(f"{option} must be FROM/TO (ISO times), got {text!r}")
    return _iso_ms(start, option), _iso_ms(end, option)


def _cmd_drift(args: argparse.Namespace) -> int:
    from pipelines.exceptions import UsageError
    from pipelines.infra.home import subdir
    from pipelines.kafka.clients import check_reachable
    from pipelines.loop.spec import DriftRequest
    from pipelines.loop.turn import loop_spec
    from pipelines.registry import get

    if args.window <= 0:
        raise UsageError(f"--window must be > 0 hours, got {args.window}")
    spec = loop_spec(args.pipeline)
    check_reachable(args.bootstrap)
    outcome = spec.measure_drift(DriftRequest(
        args.bootstrap, results_topic=args.results or get(args.pipeline).topics.output,
        changelog_topic=args.changelog or f"{args.pipeline}.state-changelog", window_ms=int(args.window * 3_600_000),
        reference=_window(args.reference, "--reference") if args.reference else None, threshold=args.threshold,
        feedback_topic=args.feedback,
        report_dir=Path(args.report_dir) if args.report_dir else subdir("reports", "drift")))
    for line in outcome.summary:
        print(line)
    print(f"report: {outcome.json_path} {outcome.png_path}")
    return 0


def add_drift_command(commands: Any) -> None:
    """Add `drift`."""
    drift = commands.add_parser("drift", help="PSI of the scored features and the score between two windows")
    drift.add_argument("pipeline", choices=[d.name for d in definitions() if d.loop is not None and d.loop.has_drift],
                       help="whose results")
    drift.add_argument("--results", metavar="TOPIC", help="the job's results (default: the config's output topic)")
    drift.add_argument("--changelog", metavar="TOPIC",
                       help="the job's --state-changelog topic (default: PIPELINE.state-changelog)")
    drift.add_argument("--window", type=float, default=24.0, metavar="HOURS",
                       help="the current window: the last HOURS of event time (default %(default)s)")
    drift.add_argument("--reference", metavar="FROM/TO", help="the reference window (ISO times; default: the "
                       "--window before the current one: a job's first window is its state's warm-up)")
    drift.add_argument("--threshold", type=float, default=0.2, help="PSI that flags drift, default %(default)s")
    drift.add_argument("--feedback", metavar="TOPIC", help="labels: also compare the label-1 events' features "
                       "between the windows (KS test), which shows a new fraud pattern too rare to move PSI")
    drift.add_argument("--report-dir", help="where drift.json/png go (default: $STREAMSCORE_HOME/reports/drift)")
    drift.set_defaults(func=_cmd_drift)
