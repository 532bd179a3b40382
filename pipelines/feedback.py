"""Synthetic feedback: the late-arriving outcomes of a synthetic stream, from its generator's ground truth.

`streamscore publish feedback risk --events N --seed S` publishes one label per event of the stream that
`streamscore publish risk --events N --seed S` publishes (the same seed gives the same events), in the order
they would arrive: a fraud is charged back `CHARGEBACK_DELAY_MS` after the transaction (uniform, 2 hours to
5 days: `source: chargeback`, label 1); a legitimate transaction is labelled 0 once it has matured without a
chargeback, `MATURITY_MS` (7 days) after it (`source: matured`). The label contract is `operators.feedback`.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import numpy as np

from pipelines.exceptions import ConfigError
from pipelines.kafka.publishing import generated_events

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHARGEBACK_DELAY_MS = (2 * HOUR_MS, 5 * DAY_MS)
MATURITY_MS = 7 * DAY_MS


def synthetic_labels(pipeline: str, n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    """The labels of the `n` seeded synthetic events of `pipeline` (of `scenario`), sorted by `labelled_at`
    (arrival order)."""
    events = generated_events(pipeline, n, seed, scenario)
    if not events or "label" not in events[0]:
        raise ConfigError(f"the {pipeline} generator has no ground-truth outcomes to report as feedback (the "
                          "risk generator has: publish feedback risk)")
    rng = np.random.default_rng(seed + 7_919)
    delays = rng.integers(*CHARGEBACK_DELAY_MS, size=len(events))
    labels = []
    for event, delay in zip(events, delays.tolist(), strict=True):
        fraud = int(event["label"]) == 1  # type: ignore[call-overload]
        labels.append({
            "event_id": event["event_id"],
            "label": int(fraud),
            "labelled_at": int(event["ts"]) + (delay if fraud else MATURITY_MS),  # type: ignore[call-overload]
            "source": "chargeback" if fraud else "matured",
        })
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
