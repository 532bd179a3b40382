"""`streamscore kafka up|down|status`: the project's single-node KRaft broker."""

from __future__ import annotations

import argparse
from typing import Any


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


def add_kafka_command(commands: Any) -> None:
    """Add `kafka`."""
    kafka = commands.add_parser("kafka", help="the project's single-node KRaft broker")
    kafka.add_argument("action", choices=["up", "down", "status"],
                       help="start (if not running), stop, or report the broker")
    kafka.add_argument("--port", type=int, default=9092, help="its client port on 127.0.0.1, default %(default)s")
    kafka.set_defaults(func=_cmd_kafka)
