"""A single-node KRaft Kafka broker on localhost, run from Maven-fetched jars (no Docker).

`up` fetches the jars, formats the storage once, starts the broker detached in its own process group and
waits until it answers; `down` stops it (SIGTERM, then SIGKILL after a grace period); `status` reports.
Each port gets its own folder `<home>/kafka/<port>/` (config, data, log, pid), so several brokers can coexist.
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
from pipelines.infra.home import subdir
from pipelines.infra.jars import KAFKA_BROKER, ensure_jars

DEFAULT_PORT = 9092

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
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
class BrokerStatus:
    """Whether the broker of a port is running, and where its files are."""

    port: int
    running: bool
    pid: int | None
    folder: Path

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers string for clients."""
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


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def status(port: int = DEFAULT_PORT) -> BrokerStatus:
    """The status of the project broker on `port`."""
    folder = _folder(port)
    pid = _pid(folder)
    return BrokerStatus(port, pid is not None and _port_open(port), pid, folder)


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


def _format_storage(java: str, classpath: str, folder: Path) -> None:
    if (folder / "data" / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    proc = subprocess.run(
        # `--cluster-id=ID`, not `-t ID`: a base64url id may start with "-", which argparse reads as an option
        [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
         f"--cluster-id={cluster_id}", "--config", str(folder / "server.properties")],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SetupError(f"formatting KRaft storage in {folder / 'data'} failed:\n{proc.stdout}{proc.stderr}")


def _wait_ready(port: int, pid: int, folder: Path, timeout_s: float) -> None:
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    admin: AdminClient | None = None
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tail = (folder / "broker.out").read_text()[-3000:]
            raise SetupError(f"the Kafka broker exited during start-up; its output:\n{tail}") from None
        if _port_open(port):
            admin = admin or AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
            try:
                metadata = admin.list_topics(timeout=2)
            except Exception:
                metadata = None
            if metadata is not None and metadata.brokers:
                return
        time.sleep(0.3)
    raise SetupError(
        f"the Kafka broker on port {port} did not answer within {timeout_s:.0f} s; see {folder / 'broker.log'}"
    )


def up(port: int = DEFAULT_PORT, *, heap: str = "768m", timeout_s: float = 90.0) -> BrokerStatus:
    """Start the broker on `port` (controller on `port + 1`) unless it already runs; wait until it answers."""
    current = status(port)
    if current.running:
        return current
    if _port_open(port):
        raise SetupError(
            f"port {port} is taken by another process: stop it or choose another with `kafka up --port P`."
        )
    folder = current.folder
    jars = ensure_jars(KAFKA_BROKER)
    java = _java()
    classpath = f"{jars}/*"
    (folder / "data").mkdir(exist_ok=True)
    (folder / "server.properties").write_text(
        _SERVER_PROPERTIES.format(port=port, controller_port=port + 1, data=folder / "data")
    )
    (folder / "log4j2.properties").write_text(_LOG4J2.format(log=folder / "broker.log"))
    _format_storage(java, classpath, folder)
    with open(folder / "broker.out", "wb") as out:
        proc = subprocess.Popen(
            [java, f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC",
             f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
             f"-Dkafka.logs.dir={folder}", "-cp", classpath, "kafka.Kafka", str(folder / "server.properties")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    (folder / "broker.pid").write_text(str(proc.pid))
    _wait_ready(port, proc.pid, folder, timeout_s)
    return status(port)


def down(port: int = DEFAULT_PORT, *, grace_s: float = 30.0) -> bool:
    """Stop the broker on `port`; True if one was running."""
    folder = _folder(port)
    pid = _pid(folder)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    (folder / "broker.pid").unlink(missing_ok=True)
    return True

