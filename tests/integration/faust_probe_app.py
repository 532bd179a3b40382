"""A minimal faust-streaming app (exactly-once) for `test_faust_client.py`: upper-cases every value of topic
`$PROBE_TOPIC` into `$PROBE_TOPIC.out`, micro-batched with `stream.take`. Run: faust -A <this module> worker."""

from __future__ import annotations

import os

import faust

TOPIC = os.environ["PROBE_TOPIC"]
app = faust.App(
    f"probe-{TOPIC}", broker=f"kafka://{os.environ['PROBE_BOOTSTRAP']}", processing_guarantee="exactly_once",
    store="memory://", topic_partitions=2, web_enabled=False, producer_acks=-1,
)
source = app.topic(TOPIC, value_type=bytes, value_serializer="raw")
sink = app.topic(f"{TOPIC}.out", value_type=bytes, value_serializer="raw", partitions=2)


@app.agent(source)
async def upper(stream: faust.StreamT[bytes]) -> None:
    """Each value, upper-cased, to the sink (in the transaction that commits the input offsets)."""
    async for batch in stream.take(100, within=0.5):
        for value in batch:
            await sink.send(value=value.upper())
