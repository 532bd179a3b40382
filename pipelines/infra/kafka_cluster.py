"""A local KRaft cluster of several brokers (`streamscore kafka up --brokers 3`), for failover tests and runs.

Node i (1-based) of the cluster on `port` listens on `port + 2(i-1)` with its controller on the next port
(`--port 19292 --brokers 3`: 19292..19297); every node is a broker and a controller, the controllers form the
quorum, and each node's files are in `<home>/kafka/<port>/node-<i>/` (the folder's `brokers` file holds the
size). Topics get `default.replication.factor` = the size (3) and `min.insync.replicas` = size - 1 (2), and so
do the internal topics (consumer offsets, transaction state): with producers at `acks=all` an acknowledged write
is on at least two brokers, and the loss of any one broker loses nothing and stops nothing.

`up` starts the nodes that do not run (after a SIGKILL, it restarts just that one), `down` stops all, `status`
reports each. A folder made as a single node cannot become a cluster (nor the reverse): `up` says so. The
cluster serves PLAINTEXT only for now (`--secure` is the single node's).
"""

from __future__ import annotations

from pathlib import Path

from pipelines.exceptions import SetupError
from pipelines.infra import kafka_node
from pipelines.infra.home import subdir
from pipelines.kafka.security import KafkaSecurity

SIZE_FILE = "brokers"


def _root(port: int) -> Path:
    return subdir("kafka", str(port))


def size(port: int) -> int:
    """The number of brokers the folder of `port` was made for (1: a single node, or nothing made yet)."""
    marker = _root(port) / SIZE_FILE
    return int(marker.read_text().strip()) if marker.exists() else 1


def node_ports(port: int, brokers: int) -> list[int]:
    """The client port of each node (its controller listens on the next port)."""
    return [port + 2 * i for i in range(brokers)]


def check_size(port: int, brokers: int, secure: bool) -> None:
    """Refuse a size the folder of `port` was not made for, a size below 1, or a secure cluster."""
    if brokers < 1:
        raise SetupError(f"--brokers must be at least 1, got {brokers}")
    if brokers > 1 and secure:
        raise SetupError("a secure broker (--secure) is a single node; start the cluster without --secure")
    made = size(port)
    root = _root(port)
    single_made = (root / "data" / "meta.properties").exists()
    if (brokers > 1 and single_made) or (made > 1 and made != brokers):
        what = f"a cluster of {made}" if made > 1 else "a single node"
        raise SetupError(
            f"the broker data in {root} was made for {what}, not {brokers}: start it as it was made "
            f"(--brokers {made}), use another --port, or delete {root} (its brokers stopped) to start over"
        )


def _node_folder(port: int, node: int) -> Path:
    folder = _root(port) / f"node-{node}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    return folder


def _cluster_id(port: int) -> str:
    path = _root(port) / "cluster-id"
    if not path.exists():
        path.write_text(kafka_node.new_cluster_id())
    return path.read_text().strip()


def status(port: int) -> kafka_node.BrokerStatus:
    """The cluster's status: one entry per node; running when every node runs."""
    nodes = tuple(
        kafka_node.node_status(node_port, _root(port) / f"node-{i}")
        for i, node_port in enumerate(node_ports(port, size(port)), start=1)
    )
    first = nodes[0]
    return kafka_node.BrokerStatus(port, all(n.running for n in nodes), first.pid, _root(port), nodes)


def up(port: int, brokers: int, *, heap: str = "768m", timeout_s: float = 120.0) -> kafka_node.BrokerStatus:
    """Start every node of the cluster on `port` that does not run; wait until all answer."""
    root = _root(port)
    ports = node_ports(port, brokers)
    voters = ",".join(f"{i}@127.0.0.1:{p + 1}" for i, p in enumerate(ports, start=1))
    (root / SIZE_FILE).write_text(f"{brokers}\n")
    java, classpath = kafka_node.java_and_classpath()
    cluster_id = _cluster_id(port)
    started = []
    for node, node_port in enumerate(ports, start=1):
        folder = _node_folder(port, node)
        if kafka_node.node_status(node_port, folder).running:
            continue
        for taken in (node_port, node_port + 1):
            if kafka_node.port_open(taken):
                raise SetupError(f"port {taken} (node {node} of the cluster on {port}) is taken by another "
                                 "process: stop it or choose another --port")
        kafka_node.write_node_files(folder, kafka_node.server_properties(
            node_port, folder, node_id=node, voters=voters, replicas=brokers))
        kafka_node.format_storage(java, classpath, folder, None, cluster_id)
        started.append((node_port, folder, kafka_node.start_node(java, classpath, folder, heap)))
    for node_port, folder, proc in started:
        kafka_node.wait_ready(node_port, proc, folder, timeout_s, KafkaSecurity(), brokers)
    return status(port)


def down(port: int, *, grace_s: float = 30.0) -> bool:
    """Stop every node of the cluster on `port`; True if any was running."""
    return kafka_node.stop_nodes([_root(port) / f"node-{i}" for i in range(1, size(port) + 1)], grace_s) > 0


def node_pid(port: int, node: int) -> int | None:
    """The pid of node `node` (1-based) of the cluster on `port`, or None if it does not run."""
    found = kafka_node.node_status(node_ports(port, size(port))[node - 1], _root(port) / f"node-{node}")
    return found.pid if found.running else None
