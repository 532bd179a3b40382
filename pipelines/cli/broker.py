"""`streamscore kafka up|down|status`: the project's KRaft broker (one node, or `--brokers N` for a cluster)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def _cmd_kafka(args: argparse.Namespace) -> int:
    from pipelines.infra import broker

    if args.action != "up" and (args.secure or args.tls_dir):
        from pipelines.exceptions import UsageError

        raise UsageError("--secure and --tls-dir are options of `kafka up`")
    if args.action != "up" and args.brokers is not None:
        from pipelines.exceptions import UsageError

        raise UsageError("--brokers is an option of `kafka up` (status and down cover every broker of the port)")
    if args.action == "up":
        secure = _broker_security(args) if args.secure else None
        st = broker.up(args.port, secure=secure, brokers=args.brokers or 1)
        if st.nodes:
            print(f"kafka cluster of {len(st.nodes)} running, bootstrap {st.bootstrap} (data in {st.folder}; "
                  f"replication factor {len(st.nodes)}, min.insync.replicas {max(1, len(st.nodes) - 1)})")
        else:
            print(f"kafka running on {st.bootstrap} (pid {st.pid}, data in {st.folder})"
                  + (f"; SASL_SSL (SCRAM-SHA-512/256), clients: --kafka-config {args.client_config}" if secure else ""))
    elif args.action == "down":
        print("kafka stopped" if broker.down(args.port) else f"no project broker running on port {args.port}")
    else:
        st = broker.status(args.port)
        for node in st.nodes or (st,):
            print(f"kafka on {node.bootstrap}: {'running, pid ' + str(node.pid) if node.running else 'not running'}")
        return 0 if st.running else 1
    return 0


def _broker_security(args: argparse.Namespace) -> Any:
    """The secure broker's TLS files (`--tls-dir`, else a development CA made once in the broker folder) and
    client user: the one of `--kafka-config` (SASL_SSL), else `streamscore` with a new password, written with the
    CA into the broker folder's `client.properties` (0600), whose path is printed."""
    import secrets

    from pipelines.exceptions import UsageError
    from pipelines.infra import broker
    from pipelines.infra.home import subdir
    from pipelines.infra.tls import BrokerTls, make_dev_certificates
    from pipelines.kafka import security

    folder = subdir("kafka", str(args.port))
    if args.tls_dir:
        tls = BrokerTls.in_folder(Path(args.tls_dir))
    elif (folder / "tls" / "broker.pem").exists():
        tls = BrokerTls.in_folder(folder / "tls")
    else:
        tls = make_dev_certificates(folder / "tls")
    client = security.active()
    if client.protocol == "SASL_SSL":
        assert client.username is not None and client.password is not None
        args.client_config = os.environ.get(security.CONFIG_ENV, "(env STREAMSCORE_KAFKA_*)")
        return broker.BrokerSecurity(tls, ((client.username, client.password),))
    if client.protocol != "PLAINTEXT":
        raise UsageError(f"kafka up --secure serves SASL_SSL; the client settings say {client.protocol} "
                         "(give a SASL_SSL --kafka-config, or none to have one made)")
    path = folder / "client.properties"
    password = security.Secret(secrets.token_urlsafe(18))
    if path.exists():
        existing = security.load(path, environ={})
        if existing.password is not None and existing.ca_location == tls.ca.resolve():
            password = existing.password
    path.touch(mode=0o600)
    path.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=streamscore\n"
        f"sasl.password={password.reveal()}\nssl.ca.location={tls.ca.resolve()}\n"
    )
    args.client_config = str(path)
    return broker.BrokerSecurity(tls, (("streamscore", password),))


def add_kafka_command(commands: Any) -> None:
    """Add `kafka`."""
    kafka = commands.add_parser("kafka", help="the project's KRaft broker (one node, or a local cluster)")
    kafka.add_argument("action", choices=["up", "down", "status"],
                       help="start (if not running), stop, or report the broker")
    kafka.add_argument("--port", type=int, default=9092, help="its client port on 127.0.0.1, default %(default)s")
    kafka.add_argument("--brokers", type=int, metavar="N",
                       help="up: a local cluster of N brokers on ports PORT, PORT+2, ... (controllers on the odd "
                       "ones), topics replicated N times with min.insync.replicas N-1 (default: one broker)")
    kafka.add_argument("--secure", action="store_true",
                       help="up: a SASL_SSL listener only (SCRAM-SHA-512/256 over TLS); the --kafka-config user is "
                       "created with its password, else a client config is made in the broker folder")
    kafka.add_argument("--tls-dir", metavar="DIR",
                       help="--secure: ca.pem, broker.pem and broker.key (PKCS#8) to use (default: a development "
                       "CA made once in the broker folder)")
    kafka.set_defaults(func=_cmd_kafka)
