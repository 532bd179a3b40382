"""The rules-only baseline risk score: a hand-written scorecard over the 12 risk features (numpy only).

It stands for what a fraud team writes before it has a model, and is what the model must beat. Each
rule that fires adds points; the score is points / maximum points (in [0, 1]):

| rule | points |
|---|---|
| amount far above the account's usual: `amount_z >= 3` | 2 |
| amount at least 5x the account's mean: `log_amount_vs_mean >= log(5)` | 1 |
| new device *and* new country (classic account takeover) | 3 |
| new country alone | 1 |
| velocity: `velocity_1h >= 5` (about five purchases in the last hour) | 2 |
| many merchants: `distinct_merchants_24h >= log1p(6)` | 1 |
| new merchant with `amount_z >= 2` | 1 |

Feature order is `operators.risk.features.FEATURE_NAMES` (copied here as `RISK_FEATURE_NAMES`, because
`models` does not import `operators`; a test checks they agree).
"""

from __future__ import annotations

import math

import numpy as np

RISK_FEATURE_NAMES: tuple[str, ...] = (
    "log_amount",
    "amount_z",
    "log_amount_vs_mean",
    "log_count",
    "log_secs_since_last",
    "velocity_1h",
    "velocity_24h",
    "distinct_merchants_24h",
    "new_merchant",
    "new_device",
    "new_country",
    "country_changed",
)
_I = {name: i for i, name in enumerate(RISK_FEATURE_NAMES)}
MAX_POINTS = 11.0


def rules_score(features: np.ndarray) -> np.ndarray:
    """The scorecard score in [0, 1] of each row of `features` (float [N, 12]); float32 [N]."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(RISK_FEATURE_NAMES):
        raise ValueError(
            f"rules_score: expected features of shape [N, {len(RISK_FEATURE_NAMES)}], got {x.shape}"
        )
    z = x[:, _I["amount_z"]]
    new_device = x[:, _I["new_device"]] > 0.5
    new_country = x[:, _I["new_country"]] > 0.5
    points = (
        2.0 * (z >= 3.0)
        + 1.0 * (x[:, _I["log_amount_vs_mean"]] >= math.log(5.0))
        + 3.0 * (new_device & new_country)
        + 1.0 * new_country
        + 2.0 * (x[:, _I["velocity_1h"]] >= 5.0)
        + 1.0 * (x[:, _I["distinct_merchants_24h"]] >= math.log1p(6.0))
        + 1.0 * ((x[:, _I["new_merchant"]] > 0.5) & (z >= 2.0))
    )
    return (points / MAX_POINTS).astype(np.float32)
