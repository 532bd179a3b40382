"""Synthetic feedback of the click stream: the shop's order system confirms what a session bought.

A click stream's `purchase` action is the checkout; the order is confirmed `ORDER_DELAY_MS` later (uniform, 1 to
30 minutes) - or cancelled (`CANCEL_SHARE` of checkouts: payment failed, changed mind), which no click shows.
Every event of a session whose item the session went on to buy (a confirmed order at or after the event) gets
label 1 at the confirmation (`source: purchase`); every other event gets label 0 once the session's attribution
window closed, `ATTRIBUTION_MS` (24 hours) after the session's last event (`source: no_purchase`). The label
contract is `operators.feedback`.
"""

from __future__ import annotations

import numpy as np

MINUTE_MS = 60_000
ORDER_DELAY_MS = (MINUTE_MS, 30 * MINUTE_MS)
CANCEL_SHARE = 0.1
ATTRIBUTION_MS = 24 * 60 * MINUTE_MS


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
