"""`streamscore cluster up|down|status`: a standalone Flink session cluster on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipelines.exceptions import UsageError


def _ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        ports = (int(low), int(high or low))
    except ValueError:
        raise UsageError(f"--prometheus-ports must be a range like 9250-9269, got {text!r}") from None
    if not 0 < ports[0] <= ports[1] < 65536:
        raise UsageError(f"--prometheus-ports must be a range like 9250-9269, got {text!r}")
    return ports


def _print(st: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st.as_json(), indent=2))
        return
    if not st.running:
        print(f"no Flink cluster answers on {st.web_ui}")
        return
    print(f"Flink cluster: JobManager {st.jobmanager}, Web UI {st.web_ui}")
    print(f"  {st.taskmanagers} TaskManagers, {st.slots_total} slots ({st.slots_available} free), "
          f"{st.jobs_running} jobs running; files in {st.folder}")
    for kind, urls in st.prometheus.items():
        for url in urls:
            print(f"  prometheus {kind}: {url}")


def _cmd_cluster(args: argparse.Namespace) -> int:
    from pipelines.infra import cluster

    if args.action == "up":
        spec = cluster.ClusterSpec(
            taskmanagers=args.taskmanagers, slots=args.slots, rest_port=args.rest_port, rpc_port=args.rpc_port,
            prometheus_ports=_ports(args.prometheus_ports), taskmanager_memory=args.taskmanager_memory,
        )
        _print(cluster.up(spec), args.json)
        return 0
    if args.action == "down":
        print("Flink cluster stopped" if cluster.down() else "no Flink cluster was running")
        return 0
    st = cluster.status()
    _print(st, args.json)
    return 0 if st.running else 1


def add_cluster_command(commands: Any) -> None:
    """Add `cluster`."""
    from pipelines.infra.cluster import ClusterSpec

    default = ClusterSpec()
    parser = commands.add_parser(
        "cluster", help="a standalone Flink session cluster on this machine (JobManager + TaskManager JVMs)"
    )
    parser.add_argument("action", choices=["up", "down", "status"],
                        help="start it (or its missing TaskManagers), stop every JVM, or report it")
    parser.add_argument("--taskmanagers", type=int, default=default.taskmanagers, help="TaskManager JVMs (up)")
    parser.add_argument("--slots", type=int, default=default.slots, help="task slots per TaskManager (up)")
    parser.add_argument("--rest-port", type=int, default=default.rest_port, help="JobManager REST / Web UI port")
    parser.add_argument("--rpc-port", type=int, default=default.rpc_port, help="JobManager RPC port")
    parser.add_argument("--prometheus-ports", default="-".join(map(str, default.prometheus_ports)),
                        metavar="LOW-HIGH", help="port range of the JVMs' Prometheus endpoints (one port each)")
    parser.add_argument("--taskmanager-memory", default=default.taskmanager_memory, metavar="SIZE",
                        help="process memory of each TaskManager (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(func=_cmd_cluster)
