"""`python -m pipelines.infra.setup_jars`: fetch every jar streamscore needs (used by `make setup`)."""

from __future__ import annotations

from pipelines.infra.jars import FLINK_CONNECTORS, KAFKA_BROKER, ensure_jars


def main() -> None:
    """Fetch the Kafka broker and Flink connector jars (no-op when already present)."""
    for bundle in (KAFKA_BROKER, FLINK_CONNECTORS):
        print(f"{bundle.name}: {ensure_jars(bundle)}")


if __name__ == "__main__":
    main()
