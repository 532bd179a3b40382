"""`python -m pipelines.infra.setup_jars`: fetch every jar streamscore needs (used by `make setup`)."""

from __future__ import annotations

from pipelines.infra import jvm_archive
from pipelines.infra.jars import FLINK_CONNECTORS, KAFKA_BROKER, ensure_jars
from pipelines.infra.operator_jar import operator_jar


def main() -> None:
    """Fetch the Kafka broker and Flink connector jars, build the Flink operator's and the Flink JVM's class-data
    sharing archive (each a no-op when present)."""
    for bundle in (KAFKA_BROKER, FLINK_CONNECTORS):
        print(f"{bundle.name}: {ensure_jars(bundle)}")
    print(f"flink operator: {operator_jar()}")
    jvm_archive.main([])


if __name__ == "__main__":
    main()
