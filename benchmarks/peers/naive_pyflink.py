"""The risk pipeline as a PyFlink newcomer writes it from the DataStream docs.

Process mode (PyFlink's default), a `KafkaSource` with `SimpleStringSchema` (values only), `json.loads`,
`key_by(lambda e: e["account_id"])`, a `KeyedProcessFunction` keeping the account's features in a
`ValueState` of `Types.PICKLED_BYTE_ARRAY()` on the RocksDB state backend, onnxruntime once per event
(the project's features, rules, policy and model: `peers.risk_app`), a `KafkaSink` at-least-once with
checkpoints every second. Bundle and buffer timeouts stay at their defaults, as a newcomer leaves them.
With `--bounded` the source stops at the offsets the topic has at start and the job finishes.

Usage: python -m peers.naive_pyflink --bootstrap HOST:PORT --input T --output T --checkpoint-dir D [--bounded]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import KeyedProcessFunction, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.datastream.state import ValueStateDescriptor

from operators.risk.schemas import Transaction
from pipelines.infra.jars import FLINK_CONNECTORS, jar_paths


class ScoreTransaction(KeyedProcessFunction):
    """Per account: read the pickled state, score the transaction, write the state back, emit the result."""

    def open(self, runtime_context: RuntimeContext) -> None:
        """Register the account state and load the model."""
        from peers.risk_app import RiskScorer

        self.account = runtime_context.get_state(ValueStateDescriptor("account", Types.PICKLED_BYTE_ARRAY()))
        self.scorer = RiskScorer()

    def process_element(self, value: dict[str, Any], ctx: KeyedProcessFunction.Context) -> Iterator[str]:
        """Score one parsed transaction and yield its result as JSON text."""
        tx = msgspec.convert(value, Transaction)
        new_state, result = self.scorer.score(tx, self.account.value())
        self.account.update(new_state)
        yield json.dumps(msgspec.to_builtins(result))


def build(
    bootstrap: str, source_topic: str, sink_topic: str, checkpoints: Path, bounded: bool
) -> StreamExecutionEnvironment:
    """The job graph: Kafka -> json.loads -> key_by(account) -> ScoreTransaction -> Kafka."""
    config = Configuration()
    config.set_string("state.backend.type", "rocksdb")
    config.set_string("execution.checkpointing.dir", checkpoints.resolve().as_uri())
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(1)
    env.enable_checkpointing(1000)
    env.set_python_executable(sys.executable)
    env.add_jars(*(p.resolve().as_uri() for p in jar_paths(FLINK_CONNECTORS)))

    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(source_topic)
        .set_group_id(f"naive-{sink_topic}")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer(SimpleStringSchema())
    )
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(sink_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )
    (
        env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "transactions")
        .map(json.loads)
        .key_by(lambda e: e["account_id"])
        .process(ScoreTransaction(), output_type=Types.STRING())
        .sink_to(sink)
    )
    return env


def main() -> None:
    """Parse the command line and run the job (until it finishes when bounded)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--checkpoint-dir", required=True, type=Path)
    parser.add_argument("--bounded", action="store_true")
    args = parser.parse_args()
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    build(args.bootstrap, args.input, args.output, args.checkpoint_dir, args.bounded).execute("naive-risk")
    print("finished", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
