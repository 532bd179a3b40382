"""A KRaft Kafka broker on localhost, run from Maven-fetched jars (no Docker): one node by default, or a
cluster of several (`up(port, brokers=3)`, `pipelines.infra.kafka_cluster`).

`up` fetches the jars, formats the storage once, starts the broker detached in its own process group and
waits until it answers; `down` stops it (SIGTERM, then SIGKILL after a grace period); `status` reports.
Each port gets its own folder `<home>/kafka/<port>/` (config, data, log, pid), so several brokers can coexist.

A secure broker (`up(..., secure=BrokerSecurity(...))`) has one client listener, SASL_SSL with SCRAM-SHA-512
and SCRAM-SHA-256, its TLS certificate from `pipelines.infra.tls`; the broker talks to itself over the same
listener as the user `streamscore-broker` (a random password in the folder's `broker-secret`, 0600, added to
the storage when it is formatted), and the client users are created or updated through the Admin API on every
`up`. A folder formatted plain cannot be started secure (nor the reverse): `up` says so.
"""

from __future__ import annotations

import os
import secrets
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
from pipelines.infra.home import subdir
from pipelines.infra.jars import KAFKA_BROKER, ensure_jars
from pipelines.infra.tls import BrokerTls
from pipelines.kafka.security import KafkaSecurity, Secret

DEFAULT_PORT = 9092
#: The user the secure broker authenticates as to itself (inter-broker traffic, transaction markers).
BROKER_USER = "streamscore-broker"
SCRAM_ITERATIONS = 8192

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


def _folder(port: int) -> Path:
    return subdir("kafka", str(port))


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


def status(port: int = DEFAULT_PORT) -> BrokerStatus:
    """The status of the project broker (or cluster) on `port`."""
    from pipelines.infra import kafka_cluster

    if kafka_cluster.size(port) > 1:
        return kafka_cluster.status(port)
    return node_status(port, _folder(port))


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


def _made_mode(folder: Path) -> str:
    """How the broker data of `folder` was made: "secure" or "plain" (folders from before secure brokers)."""
    marker = folder / "mode"
    return marker.read_text().strip() if marker.exists() else "plain"


def _check_mode(folder: Path, secure: bool) -> None:
    """Refuse to start a folder's data in the other mode than it was formatted in."""
    wanted = "secure" if secure else "plain"
    if (folder / "data" / "meta.properties").exists():
        made = _made_mode(folder)
        if made != wanted:
            raise SetupError(
                f"the broker data in {folder} was made {made}, not {wanted}: start it as it was made, use another "
                f"--port, or delete {folder} (its broker stopped) to start over"
            )
    (folder / "mode").write_text(wanted)


def _broker_password(folder: Path) -> Secret:
    """The secure broker's own SCRAM password (made once, kept 0600 in the folder)."""
    path = folder / "broker-secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(24))
    return Secret(path.read_text().strip())


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


def broker_client(port: int, folder: Path, secure: BrokerSecurity | None) -> KafkaSecurity:
    """The client settings the broker's own tools use (the broker user over SASL_SSL, or PLAINTEXT)."""
    if secure is None:
        return KafkaSecurity()
    return KafkaSecurity(protocol="SASL_SSL", mechanism="SCRAM-SHA-512", username=BROKER_USER,
                         password=_broker_password(folder), ca_location=secure.tls.ca, source=f"{folder}")


def _upsert_users(port: int, client: KafkaSecurity, users: tuple[tuple[str, Secret], ...]) -> None:
    """Create or update the SCRAM-SHA-512 and -256 credentials of `users` through the Admin API."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    if not users:
        return
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", **client.librdkafka()})
    for mechanism in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256):  # one alteration a user a call
        info = ScramCredentialInfo(mechanism, SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(user, info, password.reveal().encode()) for user, password in users
        ]
        for user, future in admin.alter_user_scram_credentials(upserts).items():
            try:
                future.result()
            except KafkaException as exc:
                raise SetupError(f"creating the SCRAM user {user!r} on port {port} failed: "
                                 f"{exc.args[0].str()}") from None


def up(
    port: int = DEFAULT_PORT, *, heap: str = "768m", timeout_s: float = 90.0, secure: BrokerSecurity | None = None,
    brokers: int = 1,
) -> BrokerStatus:
    """Start the broker on `port` (controller on `port + 1`) unless it already runs; wait until it answers.
    `secure`: a SASL_SSL listener only (module doc); its users are created or updated even if it already ran.
    `brokers` > 1: a local cluster of that many nodes (`pipelines.infra.kafka_cluster`; nodes that run are left
    alone, stopped ones are started)."""
    from pipelines.infra import kafka_cluster

    kafka_cluster.check_size(port, brokers, secure is not None)
    if brokers > 1:
        return kafka_cluster.up(port, brokers, heap=heap, timeout_s=timeout_s)
    current = status(port)
    folder = current.folder
    if current.running:
        made = _made_mode(folder)
        if made != ("secure" if secure is not None else "plain"):
            raise SetupError(f"the broker on port {port} runs {made}: `kafka down --port {port}` it first")
        if secure is not None:
            _upsert_users(port, broker_client(port, folder, secure), secure.users)
        return current
    if port_open(port):
        raise SetupError(
            f"port {port} is taken by another process: stop it or choose another with `kafka up --port P`."
        )
    java, classpath = java_and_classpath()
    (folder / "data").mkdir(exist_ok=True)
    _check_mode(folder, secure is not None)
    password = _broker_password(folder) if secure is not None else None
    write_node_files(folder, server_properties(port, folder, secure, password))
    format_storage(java, classpath, folder, password)
    proc = start_node(java, classpath, folder, heap)
    client = broker_client(port, folder, secure)
    wait_ready(port, proc, folder, timeout_s, client)
    if secure is not None:
        _upsert_users(port, client, secure.users)
    return status(port)


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


def down(port: int = DEFAULT_PORT, *, grace_s: float = 30.0) -> bool:
    """Stop the broker (every node of a cluster) on `port`; True if one was running."""
    from pipelines.infra import kafka_cluster

    if kafka_cluster.size(port) > 1:
        return kafka_cluster.down(port, grace_s=grace_s)
    return stop_node(_folder(port), grace_s)


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
