"""`streamscore demo`: broker + risk job + synthetic load, then a summary (`pipelines.infra.demo`)."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.infra.demo import run_demo

    return run_demo(port=args.port, latency_events=args.latency_events, burst_events=args.events,
                    rate=args.rate, seed=args.seed)


def add_demo_command(commands: Any) -> None:
    """Add `demo`."""
    demo = commands.add_parser("demo", help="broker + risk job + synthetic load, then a summary")
    demo.add_argument("--port", type=int, default=9092, help="the local broker's port, default %(default)s")
    demo.add_argument("--events", type=int, default=20000, help="events in the throughput burst")
    demo.add_argument("--latency-events", type=int, default=2000, help="events in the paced latency phase")
    demo.add_argument("--rate", type=float, default=500.0, help="events/s in the latency phase")
    demo.add_argument("--seed", type=int, default=7, help="seed of the demo's events, default %(default)s")
    demo.set_defaults(func=_cmd_demo)
