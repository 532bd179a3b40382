"""The operator's own cost: the project's offline runtime (decode, operator, memory state, encode) in a loop.

`pipelines.runtimes.offline.score_lines` is the chain `streamscore score` runs, the same step the Flink job applies
per record, without Kafka or Flink. Prints JSON: per pipeline, µs per event of each repetition.

Usage: python offline.py --risk-events N --reco-events N [--reps 3] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import time

from pipelines.kafka.publishing import synthetic_records
from pipelines.runtimes.offline import score_lines


def us_per_event(pipeline: str, values: list[bytes]) -> float:
    """Score `values` through a fresh operator chain; µs per event (model load excluded)."""
    lines = iter(values)
    first = next(lines)
    scored = score_lines(pipeline, iter([first, *lines]), source="bench")
    next(scored)  # opens the operator (loads the model) and scores the first event
    start = time.perf_counter()
    count = sum(1 for _ in scored)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    """Measure each pipeline `--reps` times and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--risk-events", type=int, default=10_000)
    parser.add_argument("--reco-events", type=int, default=8_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    report: dict[str, dict[str, object]] = {}
    for pipeline, n in (("risk", args.risk_events), ("reco", args.reco_events)):
        values = [value for _, value in synthetic_records(pipeline, n, args.seed)]
        report[pipeline] = {"events": n, "us_per_event": [us_per_event(pipeline, values) for _ in range(args.reps)]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
