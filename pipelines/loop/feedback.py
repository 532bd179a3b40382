"""Synthetic feedback: the late-arriving outcomes of a synthetic stream, from its generator's ground truth.

`streamscore publish feedback PIPELINE --events N --seed S` publishes one label per event of the stream that
`streamscore publish PIPELINE --events N --seed S` publishes (the same seed gives the same events), in the order
they would arrive. What a label says, and when it is known, is the pipeline's (`LoopSpec.synthetic_labels`:
risk's chargebacks, `pipelines.risk.feedback`; reco's purchases, `pipelines.reco.feedback`). The label contract
is `operators.feedback`.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from pipelines.kafka.publishing import generated_events
from pipelines.loop.turn import loop_spec


def synthetic_labels(pipeline: str, n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    """The labels of the `n` seeded synthetic events of `pipeline` (of `scenario`), sorted by `labelled_at`
    (arrival order)."""
    labels = loop_spec(pipeline).synthetic_labels(generated_events(pipeline, n, seed, scenario), seed)
    labels.sort(key=lambda label: (label["labelled_at"], label["event_id"]))
    return labels


def synthetic_label_records(
    pipeline: str, n: int, seed: int, scenario: str | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """`(event_id, JSON)` records of the synthetic labels (keyed by event id)."""
    for label in synthetic_labels(pipeline, n, seed, scenario):
        yield str(label["event_id"]).encode(), msgspec.json.encode(label)


def feedback_topic(pipeline: str) -> str:
    """The default feedback topic of `pipeline`."""
    return f"{pipeline}.feedback"
