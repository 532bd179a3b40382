"""Synthetic feedback: the late-arriving outcomes of a synthetic stream, from its generator's ground truth.

`streamscore publish feedback risk --events N --seed S` publishes one label per event of the stream that
`streamscore publish risk --events N --seed S` publishes (the same seed gives the same events), in the order
they would arrive: a fraud is charged back `CHARGEBACK_DELAY_MS` after the transaction (uniform, 2 hours to
5 days: `source: chargeback`, label 1); a legitimate transaction is labelled 0 once it has matured without a
chargeback, `MATURITY_MS` (7 days) after it (`source: matured`).

`publish feedback reco` does the same for the click stream: the shop's order system confirms what a session
bought. A click stream's `purchase` action is the checkout; the order is confirmed `ORDER_DELAY_MS` later
(uniform, 1 to 30 minutes) - or cancelled (`CANCEL_SHARE` of checkouts: payment failed, changed mind), which
no click shows. Every event of a session whose item the session went on to buy (a confirmed order at or after
the event) gets label 1 at the confirmation (`source: purchase`); every other event gets label 0 once the
session's attribution window closed, `ATTRIBUTION_MS` (24 hours) after the session's last event
(`source: no_purchase`). The label contract is `operators.feedback`.
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
MINUTE_MS = 60_000
ORDER_DELAY_MS = (MINUTE_MS, 30 * MINUTE_MS)
CANCEL_SHARE = 0.1
ATTRIBUTION_MS = DAY_MS


def synthetic_labels(pipeline: str, n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    """The labels of the `n` seeded synthetic events of `pipeline` (of `scenario`), sorted by `labelled_at`
    (arrival order)."""
    events = generated_events(pipeline, n, seed, scenario)
    if events and "action" in events[0] and "session_id" in events[0]:
        labels = purchase_labels(events, seed)
    elif events and "label" in events[0]:
        labels = chargeback_labels(events, seed)
    else:
        raise ConfigError(f"the {pipeline} generator has no ground-truth outcomes to report as feedback (the "
                          "risk and reco generators have: publish feedback risk|reco)")
    labels.sort(key=lambda label: (label["labelled_at"], label["event_id"]))
    return labels


def chargeback_labels(events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    """One label per transaction (module doc), in event order."""
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
    return labels


def purchase_labels(events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    """One label per click event (module doc), in event order: 1 when its session bought its item at or after
    the event (a confirmed order), labelled when that order was confirmed."""
    rng = np.random.default_rng(seed + 7_907)
    orders: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (session, item) -> (checkout ts, confirmed at)
    session_end: dict[str, int] = {}
    for event in events:
        session, item, ts = _click(event)
        session_end[session] = max(ts, session_end.get(session, ts))
        if event["action"] == "purchase" and rng.random() >= CANCEL_SHARE:
            orders.setdefault((session, item), []).append((ts, ts + int(rng.integers(*ORDER_DELAY_MS))))
    labels = []
    for event in events:
        session, item, ts = _click(event)
        bought = min((at for checkout, at in orders.get((session, item), ()) if checkout >= ts), default=None)
        labels.append({
            "event_id": event["event_id"],
            "label": int(bought is not None),
            "labelled_at": bought if bought is not None else session_end[session] + ATTRIBUTION_MS,
            "source": "purchase" if bought is not None else "no_purchase",
        })
    return labels


def _click(event: dict[str, object]) -> tuple[str, int, int]:
    return str(event["session_id"]), int(event["item_id"]), int(event["ts"])  # type: ignore[call-overload]


def synthetic_label_records(
    pipeline: str, n: int, seed: int, scenario: str | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """`(event_id, JSON)` records of the synthetic labels (keyed by event id)."""
    for label in synthetic_labels(pipeline, n, seed, scenario):
        yield str(label["event_id"]).encode(), msgspec.json.encode(label)


def feedback_topic(pipeline: str) -> str:
    """The default feedback topic of `pipeline`."""
    return f"{pipeline}.feedback"
