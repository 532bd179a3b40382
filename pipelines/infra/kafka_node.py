"""One KRaft node of the project's local Kafka (a broker and a controller in one process), run from the
Maven-fetched jars: its `server.properties`, storage format, start, readiness, status and stop. The single
broker (`pipelines.infra.broker`) and the cluster (`pipelines.infra.kafka_cluster`) are built from these.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import SetupError
from pipelines.infra.jars import KAFKA_BROKER, ensure_jars
from pipelines.infra.tls import BrokerTls
from pipelines.kafka.security import KafkaSecurity, Secret

#: The user the secure broker authenticates as to itself (inter-broker traffic, transaction markers).
BROKER_USER = "streamscore-broker"


_PLAIN_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""


_SECURE_LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
required username="{user}" password="{password}";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.client.auth=none
"""


_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
{listeners}log.dirs={data}
num.partitions=1
default.replication.factor={replicas}
min.insync.replicas={min_isr}
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=4
transaction.max.timeout.ms=900000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=2097152
log.retention.hours=168
"""


_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True)
class BrokerSecurity:
    """What makes a broker secure: its TLS files and the client users (SCRAM) it must accept."""

    tls: BrokerTls
    #: (user, password) pairs created or updated for SCRAM-SHA-512 and SCRAM-SHA-256 on every `up`.
    users: tuple[tuple[str, Secret], ...] = ()


@dataclass(frozen=True)
class BrokerStatus:
    """Whether the broker of a port is running, and where its files are; a cluster's status also lists its
    `nodes` (running when every node is)."""

    port: int
    running: bool
    pid: int | None
    folder: Path
    nodes: tuple[BrokerStatus, ...] = ()

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string for clients (every node of a cluster)."""
        if self.nodes:
            return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"127.0.0.1:{self.port}"


def _pid(folder: Path) -> int | None:
    pid_file = folder / "broker.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def node_status(port: int, folder: Path) -> BrokerStatus:
    """The status of the one broker process whose files are in `folder` and which listens on `port`."""
    pid = _pid(folder)
    return BrokerStatus(port, pid is not None and port_open(port), pid, folder)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise SetupError("Java is not on PATH (and JAVA_HOME is unset): install Java 17 and retry.")
    return java


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 base64url characters of a UUID, as `kafka-storage random-uuid` makes)."""
    return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(
    java: str, classpath: str, folder: Path, broker_password: Secret | None, cluster_id: str | None = None
) -> None:
    """Format the KRaft storage of `folder` once (a new cluster id unless the cluster's is given)."""
    if (folder / "data" / "meta.properties").exists():
        return
    cluster_id = cluster_id or new_cluster_id()
    scram = [] if broker_password is None else \
        [f"--add-scram=SCRAM-SHA-512=[name={BROKER_USER},password={broker_password.reveal()}]"]
    proc = subprocess.run(
        # `--cluster-id=ID`, not `-t ID`: a base64url id may start with "-", which argparse reads as an option
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
         f"--cluster-id={cluster_id}", "--config", str(folder / "server.properties"), *scram],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SetupError(f"formatting KRaft storage in {folder / 'data'} failed:\n{proc.stdout}{proc.stderr}")


def wait_ready(port: int, proc: subprocess.Popen[bytes] | None, folder: Path, timeout_s: float,
               client: KafkaSecurity, brokers: int = 1) -> None:
    """Wait until the broker on `port` answers with `brokers` brokers in its metadata (`SetupError` if its
    process `proc` exits first or the time runs out)."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin: AdminClient | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = (folder / "broker.log").read_text()[-3000:] + (folder / "broker.out").read_text()[-1000:]
            raise SetupError(f"the Kafka broker exited during start-up; its log ends:\n{tail}")
        if port_open(port):
            admin = admin or AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", **client.librdkafka()})
            try:
                metadata = admin.list_topics(timeout=2)
            except Exception:
                metadata = None
            if metadata is not None and len(metadata.brokers) >= brokers:
                return
        time.sleep(0.3)
    raise SetupError(
        f"the Kafka broker on port {port} did not answer within {timeout_s:.0f} s; see {folder / 'broker.log'}"
    )


def server_properties(
    port: int, folder: Path, secure: BrokerSecurity | None = None, password: Secret | None = None, *,
    node_id: int = 1, voters: str | None = None, replicas: int = 1,
) -> str:
    """The `server.properties` of a node listening on `port` (controller on `port + 1`); a cluster's nodes name
    every controller in `voters` and replicate topics `replicas` times (`min.insync.replicas` one less, at least
    1: with 3 replicas an acknowledged write survives the loss of one broker)."""
    listeners = _PLAIN_LISTENERS.format(port=port, controller_port=port + 1)
    if secure is not None and password is not None:
        keystore = folder / "keystore.pem"  # Kafka's PEM keystore: the private key, then the certificate chain
        keystore.touch(mode=0o600)
        keystore.write_text(secure.tls.key.read_text().rstrip() + "\n" + secure.tls.certificate.read_text())
        listeners = _SECURE_LISTENERS.format(port=port, controller_port=port + 1, user=BROKER_USER,
                                             password=password.reveal(), keystore=keystore, ca=secure.tls.ca)
    return _SERVER_PROPERTIES.format(
        node_id=node_id, voters=voters or f"{node_id}@127.0.0.1:{port + 1}", listeners=listeners,
        data=folder / "data", replicas=replicas, min_isr=max(1, replicas - 1),
    )


def java_and_classpath() -> tuple[str, str]:
    """The `java` to run and the broker's classpath (the jars fetched once)."""
    jars = ensure_jars(KAFKA_BROKER)
    return _java(), f"{jars}/*"


def write_node_files(folder: Path, properties: str) -> None:
    """Write a node's `server.properties` (0600: it may hold a password) and its log configuration."""
    path = folder / "server.properties"
    path.touch(mode=0o600)
    path.write_text(properties)
    (folder / "log4j2.properties").write_text(_LOG4J2.format(log=folder / "broker.log"))


def start_node(java: str, classpath: str, folder: Path, heap: str) -> subprocess.Popen[bytes]:
    """Start the node of `folder` detached (its own session), its pid in `broker.pid`."""
    with open(folder / "broker.out", "wb") as out:
        proc = subprocess.Popen(
            [java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={folder}", "-cp", classpath, "kafka.Kafka", str(folder / "server.properties")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    (folder / "broker.pid").write_text(str(proc.pid))
    return proc


def stop_node(folder: Path, grace_s: float = 30.0) -> bool:
    """Stop the node whose files are in `folder` (SIGTERM, SIGKILL after `grace_s`); True if it was running."""
    return bool(stop_nodes([folder], grace_s))


def stop_nodes(folders: list[Path], grace_s: float = 30.0) -> int:
    """Stop the nodes whose files are in `folders` together (SIGTERM to all, SIGKILL to those still running
    after `grace_s`); how many were running."""
    running = [(folder, pid) for folder in folders if (pid := _pid(folder)) is not None]
    for _, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(pid) for _, pid in running):
        time.sleep(0.2)
    for folder, pid in running:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        (folder / "broker.pid").unlink(missing_ok=True)
    return len(running)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a child of this process that exited is reaped, not a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not this process's child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
