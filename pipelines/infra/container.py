"""The Flink configuration of streamscore's container image (`docker-compose.yml`, the Kubernetes manifest).

It is the local session cluster's configuration (`cluster.configuration`, what `streamscore cluster up` runs and
the tests exercise) with exactly the keys of `CONTAINER_KEYS` changed for containers: listen on all interfaces,
reach the JobManager by its service name, one Prometheus port per container, checkpoints and savepoints on the
volume every container mounts at `DATA_DIR`. The image's entrypoint (`scripts/deploy/entrypoint.sh`) runs
`python -m pipelines.infra.container ROLE` to write it and to print the environment Flink's scripts need.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path

from pipelines.infra.cluster import ClusterSpec, cluster_lib, configuration, flink_home, write_conf_dir

#: The shared volume of the JobManager, TaskManagers and submitter (checkpoints, savepoints, job checkpoints).
DATA_DIR = Path("/opt/streamscore/checkpoints")
#: Each container runs one Flink JVM: one Prometheus port.
PROMETHEUS_PORT = 9249
ROLES = ("jobmanager", "taskmanager")
#: The keys whose container values differ from the local cluster's (everything else is the same by construction).
CONTAINER_KEYS = frozenset({
    "jobmanager.rpc.address", "jobmanager.bind-host", "taskmanager.bind-host", "taskmanager.host",
    "rest.address", "rest.bind-address", "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
    "metrics.reporter.prom.port",
})


def container_configuration(jobmanager_host: str, hostname: str, spec: ClusterSpec | None = None) -> dict[str, str]:
    """The configuration of one container of the cluster (`hostname`: its own name on the network)."""
    values = configuration(spec or ClusterSpec(), DATA_DIR / "cluster")
    values |= {
        "jobmanager.rpc.address": jobmanager_host,
        "jobmanager.bind-host": "0.0.0.0",
        "taskmanager.bind-host": "0.0.0.0",
        "taskmanager.host": hostname,
        "rest.address": jobmanager_host,
        "rest.bind-address": "0.0.0.0",
        "metrics.reporter.prom.port": str(PROMETHEUS_PORT),
    }
    return values


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.infra.container ROLE`: write the container's configuration; print `export` lines."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in ROLES:
        print(f"usage: python -m pipelines.infra.container {{{','.join(ROLES)}}}", file=sys.stderr)
        return 2
    conf = Path(os.environ.get("FLINK_CONF_DIR", "/opt/streamscore/flink-conf"))
    jobmanager = os.environ.get("JOBMANAGER_HOST", "jobmanager")
    write_conf_dir(conf, container_configuration(jobmanager, socket.gethostname()), f"the {args[0]} container")
    exports = {"FLINK_HOME": str(flink_home()), "FLINK_CONF_DIR": str(conf), "FLINK_LIB_DIR": str(cluster_lib())}
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
