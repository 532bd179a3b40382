"""`streamscore drift risk`: PSI of the scored features and the score, reference window vs the current one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _window(text: str, option: str) -> tuple[int, int]:
    from pipelines.cli.state import _iso_ms
    from pipelines.exceptions import UsageError

    start, sep, end = text.partition("/")
    if not sep:
        raise UsageError(f"{option} must be FROM/TO (ISO times), got {text!r}")
    return _iso_ms(start, option), _iso_ms(end, option)


def _cmd_drift(args: argparse.Namespace) -> int:
    from pipelines.drift import measure_drift, write_drift_report
    from pipelines.exceptions import UsageError
    from pipelines.infra.home import subdir
    from pipelines.kafka.clients import check_reachable
    from pipelines.registry import get

    if args.window <= 0:
        raise UsageError(f"--window must be > 0 hours, got {args.window}")
    check_reachable(args.bootstrap)
    report, scores = measure_drift(
        args.bootstrap, results_topic=args.results or get(args.pipeline).topics.output,
        changelog_topic=args.changelog or f"{args.pipeline}.state-changelog", window_ms=int(args.window * 3_600_000),
        reference=_window(args.reference, "--reference") if args.reference else None, threshold=args.threshold,
        feedback_topic=args.feedback,
    )
    json_path, png_path = write_drift_report(report, scores, Path(args.report_dir) if args.report_dir
                                             else subdir("reports", "drift"))
    print(f"{report.reference_rows:,} reference vs {report.current_rows:,} current results; score PSI "
          f"{report.score_psi}; features at or above {report.threshold}: {', '.join(report.flagged) or 'none'}")
    if report.positives is not None:
        print(f"label-1 results: {report.positives.reference_rows:,} reference vs {report.positives.current_rows:,} "
              f"current; features that changed (KS): {', '.join(report.positives.flagged) or 'none'}")
    print(f"report: {json_path} {png_path}")
    return 0


def add_drift_command(commands: Any) -> None:
    """Add `drift`."""
    drift = commands.add_parser("drift", help="PSI of the scored features and the score between two windows")
    drift.add_argument("pipeline", choices=["risk"], help="whose results")
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
