"""The risk pipeline as a Quix Streams 3.28 application, written as its docs show.

`Application(broker_address, consumer_group, auto_offset_reset="earliest", processing_guarantee=
"at-least-once")`, JSON topics, one stateful `sdf.apply` that reads and writes the account's state with
`State.get/set` (Quix's RocksDB state, changelogged to Kafka by default), `sdf.to_topic(...)`. The scoring
step is the project's own (features, rules, policy, the same ONNX model: `peers.risk_app`); the result is
the project's `RiskResult` as JSON. Runs in its own venv (quixstreams 3.28 pins confluent-kafka < 2.13).
Stops after `--count` results (`app.run(count=N)`), or on SIGTERM/SIGINT when the count is 0.

Usage: python quix_app.py --bootstrap HOST:PORT --input T --output T --group G --state-dir D [--count N]
"""

from __future__ import annotations

import argparse
from typing import Any

from quixstreams import Application, State

from peers.risk_app import RiskScorer


def build(bootstrap: str, source: str, sink: str, group: str, state_dir: str) -> Application:
    """The application: input topic -> stateful scoring per account (message key) -> output topic."""
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    transactions = app.topic(source, value_deserializer="json")
    scores = app.topic(sink, value_serializer="json")
    scorer = RiskScorer()

    def score(event: dict[str, Any], state: State) -> dict[str, Any]:
        new_state, result = scorer.score_dict(event, state.get("account"))
        state.set("account", new_state)
        return result

    sdf = app.dataframe(transactions)
    sdf = sdf.apply(score, stateful=True)
    sdf.to_topic(scores)
    return app


def main() -> None:
    """Parse the command line and run the application."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args()
    app = build(args.bootstrap, args.input, args.output, args.group, args.state_dir)
    app.run(count=args.count, collect=False)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
