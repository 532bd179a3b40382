"""`python -m pipelines.infra.setup_jars`: fetch every jar streamscore needs (used by `make setup`)."""

from __future__ import annotations

from pipelines.infra.jars import FLINK_CONNECTORS, KAFKA_BROKER, ensure_jars
from pipelines.infra.operator_jar import operator_jar


def main() -> None:
    """Fetch the Kafka broker and Flink connector jars and build the Flink operator's (no-op when present)."""
    for bundle in (KAFKA_BROKER, FLINK_CONNECTORS):
        print(f"{bundle.name}: {ensure_jars(bundle)}")
    print(f"flink operator: {operator_jar()}")


if __name__ == "__main__":
    main()
