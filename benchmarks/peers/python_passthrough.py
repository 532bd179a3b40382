"""The Python limit: confluent-kafka consume -> produce, no processing, at-least-once.

Copies each input record (key and value) to the output topic; offsets are committed after the producer
flushed what they cover. Stops after `--count` records (0: until SIGTERM/SIGINT).

Usage: python python_passthrough.py --bootstrap HOST:PORT --input T --output T --group G [--count N]
"""

from __future__ import annotations

import argparse
import signal
import time
from types import FrameType

from confluent_kafka import Consumer, KafkaError, Producer

COMMIT_EVERY_S = 1.0


def run(bootstrap: str, source: str, sink: str, group: str, count: int) -> int:
    """Copy records from `source` to `sink` until `count` (0: until a stop signal); returns how many."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
    })
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([source])
    copied = 0
    last_commit = time.monotonic()
    try:
        while not stopping and (count == 0 or copied < count):
            batch = consumer.consume(num_messages=1000, timeout=0.005)
            for msg in batch:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(f"consuming {source!r}: {error}")
                while True:
                    try:
                        producer.produce(sink, value=msg.value(), key=msg.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
                copied += 1
            producer.poll(0)
            if batch and time.monotonic() - last_commit > COMMIT_EVERY_S:
                producer.flush()
                consumer.commit(asynchronous=False)
                last_commit = time.monotonic()
        if producer.flush(60):
            raise RuntimeError(f"producing to {sink!r}: records left unsent after 60 s")
        if copied:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return copied


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    copied = run(args.bootstrap, args.input, args.output, args.group, args.count)
    print(f"copied {copied} records", flush=True)


if __name__ == "__main__":
    main()
