"""Incremental per-account risk features: O(1) in the account's history, updated one event at a time.

The state never holds the history itself: amount moments use Welford's update, velocities are
exponentially decayed counts over event time, and the "seen" sets (merchants, devices, countries) are
bounded maps of last-seen times pruned to a horizon. Out-of-order events are scored and folded in:
decay uses the newest event time seen, so counts never go negative and nothing becomes NaN.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FIRST_GAP_SECONDS = 30 * 86_400.0  # stands in for "time since last" on an account's first transaction
MAX_TRACKED = 64  # per seen-set; the oldest entry is evicted beyond this
Z_CLIP = 10.0

FEATURE_NAMES: tuple[str, ...] = (
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


class RiskFeatureState(msgspec.Struct, kw_only=True):
    """What the risk operator remembers about one account (everything needed for the next update)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    last_ts: int = 0
    newest_ts: int = 0
    velocity_1h: float = 0.0
    velocity_24h: float = 0.0
    last_country: str = ""
    merchants: dict[str, int] = msgspec.field(default_factory=dict)
    devices: dict[str, int] = msgspec.field(default_factory=dict)
    countries: dict[str, int] = msgspec.field(default_factory=dict)


class TransactionView(msgspec.Struct, frozen=True):
    """The fields of a transaction the features read (decouples features from the wire schema)."""

    amount: float
    merchant_id: str
    country: str
    device_id: str
    ts: int


def _decayed(value: float, from_ts: int, to_ts: int, horizon_ms: int) -> float:
    if to_ts <= from_ts:
        return value
    return value * math.exp(-(to_ts - from_ts) / horizon_ms)


def _remember(seen: dict[str, int], item: str, ts: int, horizon_ms: int, newest_ts: int) -> None:
    seen[item] = max(ts, seen.get(item, ts))
    cutoff = newest_ts - horizon_ms
    stale = [name for name, last in seen.items() if last < cutoff]
    for name in stale:
        del seen[name]
    while len(seen) > MAX_TRACKED:
        del seen[min(seen, key=seen.__getitem__)]


def update(state: RiskFeatureState, tx: TransactionView) -> tuple[RiskFeatureState, np.ndarray]:
    """Fold `tx` into a copy of `state`; return the new state and the feature vector (float32, FEATURE_NAMES order).

    Features describe the transaction relative to the account *before* it (so a first transaction has
    count 0); the returned state includes it.
    """
    s = msgspec.structs.replace(
        state,
        merchants=dict(state.merchants),
        devices=dict(state.devices),
        countries=dict(state.countries),
    )
    known = s.count > 0
    std = math.sqrt(s.m2 / (s.count - 1)) if s.count > 1 else 0.0
    z = (tx.amount - s.mean) / std if std > 1e-9 else 0.0
    z = max(-Z_CLIP, min(Z_CLIP, z))
    gap_s = max(0, tx.ts - s.last_ts) / 1000.0 if known else FIRST_GAP_SECONDS
    newest = max(s.newest_ts, tx.ts)
    v1 = _decayed(s.velocity_1h, s.newest_ts, newest, HOUR_MS)
    v24 = _decayed(s.velocity_24h, s.newest_ts, newest, DAY_MS)
    merchants_24h = sum(1 for last in s.merchants.values() if last >= newest - DAY_MS)
    features = np.array(
        [
            math.log1p(tx.amount),
            z,
            math.log1p(tx.amount) - math.log1p(s.mean) if known else 0.0,
            math.log1p(s.count),
            math.log1p(gap_s),
            v1,
            v24,
            math.log1p(merchants_24h),
            float(known and tx.merchant_id not in s.merchants),
            float(known and tx.device_id not in s.devices),
            float(known and tx.country not in s.countries),
            float(known and tx.country != s.last_country),
        ],
        dtype=np.float32,
    )
    # Welford update of the amount moments.
    s.count += 1
    delta = tx.amount - s.mean
    s.mean += delta / s.count
    s.m2 += delta * (tx.amount - s.mean)
    # The event's own weight decays from its event time to the newest time (out-of-order events weigh less).
    s.velocity_1h = v1 + math.exp(-(newest - tx.ts) / HOUR_MS)
    s.velocity_24h = v24 + math.exp(-(newest - tx.ts) / DAY_MS)
    if tx.ts >= s.last_ts:
        s.last_ts = tx.ts
        s.last_country = tx.country
    s.newest_ts = newest
    _remember(s.merchants, tx.merchant_id, tx.ts, DAY_MS, newest)
    _remember(s.devices, tx.device_id, tx.ts, 30 * DAY_MS, newest)
    _remember(s.countries, tx.country, tx.ts, 30 * DAY_MS, newest)
    return s, features
