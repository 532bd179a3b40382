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

import secrets
from pathlib import Path

from pipelines.exceptions import SetupError
from pipelines.infra import kafka_cluster
from pipelines.infra.home import subdir
from pipelines.infra.kafka_node import (
    BROKER_USER,
    BrokerSecurity,
    BrokerStatus,
    format_storage,
    java_and_classpath,
    new_cluster_id,
    node_status,
    port_open,
    server_properties,
    start_node,
    stop_node,
    wait_ready,
    write_node_files,
)
from pipelines.kafka.security import KafkaSecurity, Secret

__all__ = ["BROKER_USER", "DEFAULT_PORT", "BrokerSecurity", "BrokerStatus", "down", "new_cluster_id", "status", "up"]

DEFAULT_PORT = 9092
SCRAM_ITERATIONS = 8192


def _folder(port: int) -> Path:
    return subdir("kafka", str(port))


def status(port: int = DEFAULT_PORT) -> BrokerStatus:
    """The status of the project broker (or cluster) on `port`."""
    if kafka_cluster.size(port) > 1:
        return kafka_cluster.status(port)
    return node_status(port, _folder(port))


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
    format_storage(java, classpath, folder, password, new_cluster_id())
    proc = start_node(java, classpath, folder, heap)
    client = broker_client(port, folder, secure)
    wait_ready(port, proc, folder, timeout_s, client)
    if secure is not None:
        _upsert_users(port, client, secure.users)
    return status(port)


def down(port: int = DEFAULT_PORT, *, grace_s: float = 30.0) -> bool:
    """Stop the broker (every node of a cluster) on `port`; True if one was running."""
    if kafka_cluster.size(port) > 1:
        return kafka_cluster.down(port, grace_s=grace_s)
    return stop_node(_folder(port), grace_s)
