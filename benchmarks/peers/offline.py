"""The operator's own cost: the project's offline runtime (decode, operator, memory state, encode) in a loop.

`pipelines.runtimes.offline.score_lines` is the chain `streamscore score` runs: in batches of 500 (the step the
faust runtime and the Flink buffered operator take) and, for comparison, one event at a time (`batch_size=1`, the
per-record Flink function's path), without Kafka or Flink. Prints JSON: per pipeline and mode, µs per event of
each repetition, as the slope between scoring the first event and scoring all of them (the operator's opening,
the model load, cancels out).

Usage: python offline.py --risk-events N --reco-events N [--reps 3] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import time

from pipelines.kafka.publishing import synthetic_records
from pipelines.runtimes.offline import BATCH_SIZE, score_lines

#: The modes measured: name suffix and batch size.
MODES = (("", BATCH_SIZE), ("/one-at-a-time", 1))


def _seconds(pipeline: str, values: list[bytes], batch_size: int) -> float:
    start = time.perf_counter()
    for _ in score_lines(pipeline, iter(values), source="bench", batch_size=batch_size):
        pass
    return time.perf_counter() - start


def us_per_event(pipeline: str, values: list[bytes], batch_size: int) -> float:
    """µs per event of a fresh operator chain over `values`, opening and model load excluded."""
    first = _seconds(pipeline, values[:1], batch_size)
    return (_seconds(pipeline, values, batch_size) - first) / (len(values) - 1) * 1e6


def main() -> None:
    """Measure each pipeline and mode `--reps` times and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--risk-events", type=int, default=10_000)
    parser.add_argument("--reco-events", type=int, default=8_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    report: dict[str, dict[str, object]] = {}
    for pipeline, n in (("risk", args.risk_events), ("reco", args.reco_events)):
        values = [value for _, value in synthetic_records(pipeline, n, args.seed)]
        for suffix, batch_size in MODES:
            report[pipeline + suffix] = {"events": n, "batch_size": batch_size,
                                         "us_per_event": [us_per_event(pipeline, values, batch_size)
                                                          for _ in range(args.reps)]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
