"""Synthetic feedback of the transaction stream: the chargebacks and maturities of `publish risk --events N
--seed S`, from its generator's ground truth.

A fraud is charged back `CHARGEBACK_DELAY_MS` after the transaction (uniform, 2 hours to 5 days: `source:
chargeback`, label 1); a legitimate transaction is labelled 0 once it has matured without a chargeback,
`MATURITY_MS` (7 days) after it (`source: matured`). The label contract is `operators.feedback`.
"""

from __future__ import annotations

import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHARGEBACK_DELAY_MS = (2 * HOUR_MS, 5 * DAY_MS)
MATURITY_MS = 7 * DAY_MS


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
