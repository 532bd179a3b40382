"""Incremental per-account risk features: O(1) in the account's history, updated one event at a time.

The state never holds the history itself: amount moments use Welford's update, velocities are
exponentially decayed counts over event time, and the "seen" sets (merchants, devices, countries) are
bounded maps of last-seen times pruned to a horizon. Out-of-order events are scored and folded in:
decay uses the newest event time seen, so counts never go negative and nothing becomes NaN.
"""

from __future__ import annotations

import math
from typing import Protocol

import msgspec
import numpy as np

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
FIRST_GAP_SECONDS = 30 * 86_400.0  # stands in for "time since last" on an account's first transaction
MAX_TRACKED = 64  # per seen-set; the oldest entry is evicted beyond this
Z_CLIP = 10.0
_MONTH_MS = 30 * DAY_MS  # devices and countries are remembered for 30 days
_LOG1P_FIRST_GAP = math.log1p(FIRST_GAP_SECONDS)
_exp = math.exp
_log1p = math.log1p
_sqrt = math.sqrt

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


class TransactionLike(Protocol):
    """What the features read from a transaction (`TransactionView`, or a decoded `Transaction` as it is)."""

    @property
    def amount(self) -> float: ...

    @property
    def merchant_id(self) -> str: ...

    @property
    def country(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def ts(self) -> int: ...


def _pruned(seen: dict[str, int], cutoff: int) -> dict[str, int]:
    """A new map of `seen` without the entries last seen before `cutoff`, then without its oldest entries beyond
    `MAX_TRACKED` (ties: the first inserted goes first). `seen` itself is not modified."""
    kept = {name: last for name, last in seen.items() if last >= cutoff}
    while len(kept) > MAX_TRACKED:
        del kept[min(kept, key=kept.__getitem__)]
    return kept


def advance(state: RiskFeatureState, tx: TransactionLike) -> tuple[RiskFeatureState, list[float]]:
    """Fold `tx` into a copy of `state`; return the new state and the feature values (FEATURE_NAMES order) as
    Python floats, before rounding to float32 (`update` returns them as the float32 vector the model reads).

    Features describe the transaction relative to the account *before* it (so a first transaction has
    count 0); the returned state includes it. `state` itself is not modified.
    """
    # The hot path of the risk operator: each value is computed by the same float operations, in the same order,
    # as the plain formulas (tests compare it with them bit for bit), with fewer interpreter steps.
    count = state.count
    mean = state.mean
    last_ts = state.last_ts
    newest_ts = state.newest_ts
    amount = tx.amount
    ts = tx.ts
    merchant = tx.merchant_id
    device = tx.device_id
    country = tx.country
    merchants = state.merchants
    devices = state.devices
    countries = state.countries
    newest = ts if ts > newest_ts else newest_ts
    day_cutoff = newest - DAY_MS
    # Velocities decay from the newest event time seen to the new newest one.
    v1 = state.velocity_1h
    v24 = state.velocity_24h
    if newest > newest_ts:
        v1 = v1 * _exp(-(newest - newest_ts) / HOUR_MS)
        v24 = v24 * _exp(-(newest - newest_ts) / DAY_MS)
    if merchants and min(merchants.values()) < day_cutoff:
        merchants_24h = 0
        for last in merchants.values():
            if last >= day_cutoff:
                merchants_24h += 1
        stale_merchants = True
    else:
        merchants_24h = len(merchants)
        stale_merchants = False
    log_amount = _log1p(amount)
    if count:
        std = _sqrt(state.m2 / (count - 1)) if count > 1 else 0.0
        z = (amount - mean) / std if std > 1e-9 else 0.0
        if not z < Z_CLIP:  # exactly max(-Z_CLIP, min(Z_CLIP, z)), NaN included
            z = Z_CLIP
        elif not z > -Z_CLIP:
            z = -Z_CLIP
        values = [
            log_amount,
            z,
            log_amount - _log1p(mean),
            _log1p(count),
            _log1p((ts - last_ts) / 1000.0 if ts > last_ts else 0.0),
            v1,
            v24,
            _log1p(merchants_24h),
            0.0 if merchant in merchants else 1.0,
            0.0 if device in devices else 1.0,
            0.0 if country in countries else 1.0,
            0.0 if country == state.last_country else 1.0,
        ]
    else:
        values = [log_amount, 0.0, 0.0, 0.0, _LOG1P_FIRST_GAP, v1, v24, _log1p(merchants_24h), 0.0, 0.0, 0.0, 0.0]
    # Welford update of the amount moments.
    count += 1
    delta = amount - mean
    new_mean = mean + delta / count
    # The seen maps: `item` recorded at `ts` (its latest time kept), then entries last seen before the map's cutoff
    # dropped and the oldest beyond MAX_TRACKED evicted. A map is copied only when it changes (`{**old, item: ts}`
    # keeps an existing item's place, as an assignment does); maps of earlier states are never modified.
    seen_at = merchants.get(merchant)
    if seen_at is None or ts > seen_at:
        merchants = {**merchants, merchant: ts}
    if ((stale_merchants or ts < day_cutoff) and min(merchants.values()) < day_cutoff) or len(merchants) > MAX_TRACKED:
        merchants = _pruned(merchants, day_cutoff)
    month_cutoff = newest - _MONTH_MS
    seen_at = devices.get(device)
    if seen_at is None or ts > seen_at:
        devices = {**devices, device: ts}
    if min(devices.values()) < month_cutoff or len(devices) > MAX_TRACKED:
        devices = _pruned(devices, month_cutoff)
    seen_at = countries.get(country)
    if seen_at is None or ts > seen_at:
        countries = {**countries, country: ts}
    if min(countries.values()) < month_cutoff or len(countries) > MAX_TRACKED:
        countries = _pruned(countries, month_cutoff)
    in_order = ts >= last_ts
    return (
        RiskFeatureState(
            count=count,
            mean=new_mean,
            m2=state.m2 + delta * (amount - new_mean),
            last_ts=ts if in_order else last_ts,
            newest_ts=newest,
            # The event's own weight decays from its event time to the newest time (out-of-order events weigh less).
            velocity_1h=v1 + (1.0 if newest == ts else _exp(-(newest - ts) / HOUR_MS)),
            velocity_24h=v24 + (1.0 if newest == ts else _exp(-(newest - ts) / DAY_MS)),
            last_country=country if in_order else state.last_country,
            merchants=merchants,
            devices=devices,
            countries=countries,
        ),
        values,
    )


def update(state: RiskFeatureState, tx: TransactionLike) -> tuple[RiskFeatureState, np.ndarray]:
    """Fold `tx` into a copy of `state`; return the new state and the feature vector (float32, FEATURE_NAMES order).

    Features describe the transaction relative to the account *before* it (so a first transaction has
    count 0); the returned state includes it.
    """
    new_state, values = advance(state, tx)
    return new_state, np.array(values, dtype=np.float32)
