"""Incremental risk features: pure updates, O(1) state, Welford moments equal to numpy's, velocities, the
"new"/"changed" flags, robustness to out-of-order and extreme inputs, determinism.

Expected values are derived from the event sequence itself (numpy over the amounts, closed-form decay
sums over the timestamps), never copied from the implementation's output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.risk.features import (
    DAY_MS,
    FEATURE_NAMES,
    FIRST_GAP_SECONDS,
    HOUR_MS,
    MAX_TRACKED,
    Z_CLIP,
    RiskFeatureState,
    TransactionView,
    advance,
    update,
)

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, an ordinary event time
FLAGS = ("new_merchant", "new_device", "new_country", "country_changed")


def _tx(
    amount: float = 10.0, ts: int = T0, merchant: str = "m0", device: str = "d0", country: str = "US"
) -> TransactionView:
    return TransactionView(amount=amount, merchant_id=merchant, country=country, device_id=device, ts=ts)


def _run(
    events: Sequence[TransactionView], state: RiskFeatureState | None = None
) -> tuple[RiskFeatureState, list[np.ndarray], list[RiskFeatureState]]:
    """Fold `events` in order; return the final state, every vector and every intermediate state."""
    state = state if state is not None else RiskFeatureState()
    vectors: list[np.ndarray] = []
    states: list[RiskFeatureState] = []
    for tx in events:
        state, vector = update(state, tx)
        vectors.append(vector)
        states.append(state)
    return state, vectors, states


def _encoded(state: RiskFeatureState) -> bytes:
    return msgspec.msgpack.encode(state)


# ------------------------------------------------------------------------------------------- purity


def test_update_returns_float32_vector_in_feature_order() -> None:
    state, vector = update(RiskFeatureState(), _tx())
    assert vector.dtype == np.float32 and vector.shape == (len(FEATURE_NAMES),)
    assert isinstance(state, RiskFeatureState) and state.count == 1


def test_input_state_is_not_mutated() -> None:
    events = [_tx(amount=5.0 + i, ts=T0 + i * 60_000, merchant=f"m{i % 3}", device=f"d{i % 2}") for i in range(6)]
    state, _, _ = _run(events)
    before = _encoded(state)
    merchants, devices, countries = state.merchants, state.devices, state.countries
    tx = _tx(amount=999.0, ts=T0 + 10 * DAY_MS, merchant="fresh", country="FR")  # prunes every seen-map
    new_state, vector = update(state, tx)
    assert _encoded(state) == before
    assert state.merchants is merchants and state.devices is devices and state.countries is countries
    assert new_state is not state
    assert new_state.merchants is not state.merchants and new_state.devices is not state.devices
    assert new_state.countries is not state.countries
    assert new_state.merchants == {"fresh": tx.ts} and state.merchants == merchants
    # Updating the same old state again gives the same answer (nothing leaked between the calls).
    again, vector_again = update(state, tx)
    assert _encoded(again) == _encoded(new_state) and vector_again.tobytes() == vector.tobytes()


# ---------------------------------------------------------------------------------- O(1) state size


@pytest.mark.parametrize("kind", ["merchant", "device", "country"])
def test_seen_maps_are_bounded_and_evict_the_oldest(kind: str) -> None:
    n = MAX_TRACKED * 3
    events = [_tx(ts=T0 + i * 1000, **{kind: f"{kind}-{i:04d}"}) for i in range(n)]  # all within an hour
    state, _, states = _run(events)
    seen = {"merchant": state.merchants, "device": state.devices, "country": state.countries}[kind]
    assert len(seen) == MAX_TRACKED
    assert set(seen) == {f"{kind}-{i:04d}" for i in range(n - MAX_TRACKED, n)}  # the newest survive
    for s in states:
        assert max(len(s.merchants), len(s.devices), len(s.countries)) <= MAX_TRACKED
    encoded_sizes = [len(_encoded(s)) for s in states[MAX_TRACKED:]]
    assert max(encoded_sizes) - min(encoded_sizes) < 64  # the state stops growing with history


def test_seen_maps_are_pruned_to_their_horizon() -> None:
    old = [_tx(ts=T0, merchant="old-m", device="old-d", country="GB")]
    day_later = _tx(ts=T0 + DAY_MS + 1, merchant="m1", device="d1", country="US")
    state, _, _ = _run([*old, day_later])
    assert "old-m" not in state.merchants and "m1" in state.merchants  # merchants: 24 h
    assert "old-d" in state.devices and "GB" in state.countries  # devices/countries: 30 days
    state, _ = update(state, _tx(ts=T0 + 30 * DAY_MS + 1, merchant="m2", device="d2", country="US"))
    assert "old-d" not in state.devices and "GB" not in state.countries


# ----------------------------------------------------------------------------- Welford moments


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_moments_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    amounts = np.round(rng.lognormal(3.0, 1.2, size=300), 2)
    amounts[rng.integers(0, 300, size=5)] *= 50  # a few outliers
    events = [_tx(amount=float(a), ts=T0 + i * 600_000) for i, a in enumerate(amounts)]
    _, vectors, states = _run(events)
    for k, (state, vector) in enumerate(zip(states, vectors, strict=True)):
        seen = amounts[: k + 1]
        assert state.count == k + 1
        assert state.mean == pytest.approx(np.mean(seen), rel=1e-12)
        if k >= 1:
            assert state.m2 / k == pytest.approx(np.var(seen, ddof=1), rel=1e-9)
        # The vector describes amounts[k] relative to amounts[:k].
        prior = amounts[:k]
        x = amounts[k]
        assert vector[IDX["log_amount"]] == pytest.approx(np.log1p(x), rel=1e-6)
        assert vector[IDX["log_count"]] == pytest.approx(np.log1p(k), rel=1e-6)
        if k >= 2:
            z = np.clip((x - prior.mean()) / prior.std(ddof=1), -Z_CLIP, Z_CLIP)
            assert vector[IDX["amount_z"]] == pytest.approx(z, rel=1e-5, abs=1e-5)
        else:
            assert vector[IDX["amount_z"]] == 0.0
        expected_vs_mean = np.log1p(x) - np.log1p(prior.mean()) if k >= 1 else 0.0
        assert vector[IDX["log_amount_vs_mean"]] == pytest.approx(expected_vs_mean, rel=1e-5, abs=1e-5)


def test_constant_amounts_give_zero_z_not_nan() -> None:
    _, vectors, states = _run([_tx(amount=19.99, ts=T0 + i) for i in range(20)])
    assert all(v[IDX["amount_z"]] == 0.0 for v in vectors)
    assert states[-1].m2 == pytest.approx(0.0, abs=1e-9)


def test_z_is_clipped() -> None:
    events = [_tx(amount=10.0 + (i % 2) * 0.01, ts=T0 + i) for i in range(10)]
    state, _, _ = _run(events)
    _, high = update(state, _tx(amount=1e6, ts=T0 + 100))
    _, low = update(state, _tx(amount=1e-3, ts=T0 + 100))
    assert high[IDX["amount_z"]] == Z_CLIP and low[IDX["amount_z"]] == -Z_CLIP


# --------------------------------------------------------------------------- time and velocities


def test_time_since_last() -> None:
    gaps_ms = [0, 1, 999, 60_000, 3 * HOUR_MS, 2 * DAY_MS]
    ts = T0 + np.cumsum([0, *gaps_ms])
    _, vectors, _ = _run([_tx(ts=int(t)) for t in ts])
    assert vectors[0][IDX["log_secs_since_last"]] == pytest.approx(math.log1p(FIRST_GAP_SECONDS), rel=1e-6)
    for vector, gap in zip(vectors[1:], gaps_ms, strict=True):
        assert vector[IDX["log_secs_since_last"]] == pytest.approx(math.log1p(gap / 1000.0), rel=1e-6)


def test_out_of_order_event_does_not_move_time_backwards() -> None:
    state, _, _ = _run([_tx(ts=T0), _tx(ts=T0 + HOUR_MS, country="FR")])
    late, vector = update(state, _tx(ts=T0 + 10 * 60_000, country="DE"))  # 50 minutes in the past
    assert vector[IDX["log_secs_since_last"]] == 0.0
    assert late.last_ts == T0 + HOUR_MS and late.newest_ts == T0 + HOUR_MS
    assert late.last_country == "FR"  # the latest event (by event time) still decides "last country"
    _, after = update(late, _tx(ts=T0 + 2 * HOUR_MS, country="FR"))
    assert after[IDX["log_secs_since_last"]] == pytest.approx(math.log1p(HOUR_MS / 1000), rel=1e-6)
    assert after[IDX["country_changed"]] == 0.0


@pytest.mark.parametrize("seed", [3, 4])
def test_velocities_are_decayed_counts_of_earlier_events(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = T0 + np.sort(rng.integers(0, 3 * DAY_MS, size=120))
    ts[10:15] = ts[10]  # simultaneous events
    _, vectors, _ = _run([_tx(ts=int(t)) for t in ts])
    for k, vector in enumerate(vectors):
        ages = (ts[k] - ts[:k]).astype(np.float64)
        assert vector[IDX["velocity_1h"]] == pytest.approx(np.exp(-ages / HOUR_MS).sum(), rel=1e-5, abs=1e-6)
        assert vector[IDX["velocity_24h"]] == pytest.approx(np.exp(-ages / DAY_MS).sum(), rel=1e-5, abs=1e-6)


def test_simultaneous_events_count_fully() -> None:
    _, vectors, _ = _run([_tx(ts=T0) for _ in range(12)])
    assert [float(v[IDX["velocity_1h"]]) for v in vectors] == [float(k) for k in range(12)]


def test_distinct_merchants_in_the_last_24h() -> None:
    rng = np.random.default_rng(7)
    ts = T0 + np.sort(rng.integers(0, 4 * DAY_MS, size=150))
    merchants = [f"m{int(m)}" for m in rng.integers(0, 40, size=150)]
    _, vectors, _ = _run([_tx(ts=int(t), merchant=m) for t, m in zip(ts, merchants, strict=True)])
    for k, vector in enumerate(vectors):
        recent = {merchants[i] for i in range(k) if ts[i] >= ts[k] - DAY_MS}
        assert vector[IDX["distinct_merchants_24h"]] == pytest.approx(math.log1p(len(recent)), rel=1e-6)


# -------------------------------------------------------------------------------------------- flags


def test_new_and_changed_flags() -> None:
    steps = [
        # (merchant, device, country) -> expected (new_merchant, new_device, new_country, country_changed)
        (("m1", "d1", "US"), (0, 0, 0, 0)),  # first transaction: nothing is "new" yet
        (("m1", "d1", "US"), (0, 0, 0, 0)),
        (("m2", "d1", "US"), (1, 0, 0, 0)),
        (("m2", "d2", "US"), (0, 1, 0, 0)),
        (("m3", "d2", "FR"), (1, 0, 1, 1)),
        (("m3", "d2", "FR"), (0, 0, 0, 0)),
        (("m1", "d1", "US"), (0, 0, 0, 1)),  # back home: known country, but it changed
        (("m4", "d9", "JP"), (1, 1, 1, 1)),
    ]
    state = RiskFeatureState()
    for i, ((merchant, device, country), expected) in enumerate(steps):
        state, vector = update(state, _tx(ts=T0 + i * 60_000, merchant=merchant, device=device, country=country))
        got = tuple(int(vector[IDX[f]]) for f in FLAGS)
        assert got == expected, f"step {i}: {dict(zip(FLAGS, got, strict=True))}"


# ------------------------------------------------------------------------------- properties


AMOUNTS = st.floats(min_value=0.01, max_value=1e7) | st.floats(
    min_value=5e-324, max_value=1.7976931348623157e308, allow_nan=False, allow_infinity=False
)
EVENTS = st.lists(
    st.builds(
        _tx,
        amount=AMOUNTS.filter(lambda a: a > 0),
        ts=st.integers(T0 - 3 * DAY_MS, T0 + 3 * DAY_MS) | st.sampled_from([T0, T0 + 1, T0 - HOUR_MS]),
        merchant=st.sampled_from([f"m{i}" for i in range(5)]) | st.text(min_size=1, max_size=4),
        device=st.sampled_from(["d0", "d1", "d2"]),
        country=st.sampled_from(["US", "FR", "DE", "JP"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_arbitrary_sequences_give_finite_vectors_and_consistent_state(events: list[TransactionView]) -> None:
    state = RiskFeatureState()
    for i, tx in enumerate(events):
        before = _encoded(state)
        new_state, vector = update(state, tx)
        assert _encoded(state) == before
        state = new_state
        assert np.isfinite(vector).all(), dict(zip(FEATURE_NAMES, vector.tolist(), strict=True))
        assert vector[IDX["velocity_1h"]] >= 0 and vector[IDX["velocity_24h"]] >= 0
        assert vector[IDX["velocity_1h"]] <= i + 1e-3 and vector[IDX["velocity_24h"]] <= i + 1e-3
        assert state.velocity_1h >= 0 and state.velocity_24h >= 0
        assert vector[IDX["log_secs_since_last"]] >= 0
        assert vector[IDX["log_count"]] == pytest.approx(math.log1p(i), rel=1e-6)
        assert all(vector[IDX[f]] in (0.0, 1.0) for f in FLAGS)
        assert -Z_CLIP <= vector[IDX["amount_z"]] <= Z_CLIP
        assert state.count == i + 1
        assert max(len(state.merchants), len(state.devices), len(state.countries)) <= MAX_TRACKED
        assert state.m2 >= 0
    assert state.newest_ts == max(tx.ts for tx in events) == state.last_ts
    amounts = np.array([tx.amount for tx in events])
    with np.errstate(over="ignore"):
        total = amounts.sum()
    if np.isfinite(total):
        assert state.mean == pytest.approx(total / len(amounts), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(events=EVENTS)
def test_same_sequence_gives_byte_identical_vectors(events: list[TransactionView]) -> None:
    first_state, first, _ = _run(events)
    second_state, second, _ = _run(events)
    assert [v.tobytes() for v in first] == [v.tobytes() for v in second]
    assert _encoded(first_state) == _encoded(second_state)


def test_same_long_sequence_gives_byte_identical_vectors() -> None:
    rng = np.random.default_rng(11)
    events = [
        _tx(
            amount=float(rng.lognormal(3, 1)),
            ts=int(T0 + rng.integers(-HOUR_MS, 5 * DAY_MS)),
            merchant=f"m{int(rng.integers(0, 200))}",
            device=f"d{int(rng.integers(0, 5))}",
            country=str(rng.choice(["US", "FR", "DE"])),
        )
        for _ in range(1000)
    ]
    runs = [b"".join(v.tobytes() for v in _run(events)[1]) for _ in range(2)]
    assert runs[0] == runs[1]


# ------------------------------------------------------------ the plain formulas (the fast path equals them)


def _reference_remember(seen: dict[str, int], item: str, ts: int, cutoff: int) -> None:
    """The seen-map update as first written: latest time, prune to `cutoff`, evict the oldest beyond the bound."""
    if item not in seen or ts > seen[item]:
        seen[item] = ts
    for name in [name for name, last in seen.items() if last < cutoff]:
        del seen[name]
    while len(seen) > MAX_TRACKED:
        del seen[min(seen, key=seen.__getitem__)]


def _reference_advance(state: RiskFeatureState, tx: TransactionView) -> tuple[RiskFeatureState, list[float]]:
    """`advance` as the plain formulas, before the hot path was tuned (2026-12-06): the fast path must give the
    same state and values bit for bit."""
    known = state.count > 0
    merchants, devices, countries = dict(state.merchants), dict(state.devices), dict(state.countries)
    std = math.sqrt(state.m2 / (state.count - 1)) if state.count > 1 else 0.0
    z = (tx.amount - state.mean) / std if std > 1e-9 else 0.0
    z = max(-Z_CLIP, min(Z_CLIP, z))
    gap_s = max(0, tx.ts - state.last_ts) / 1000.0 if known else FIRST_GAP_SECONDS
    newest = max(state.newest_ts, tx.ts)
    v1, v24 = state.velocity_1h, state.velocity_24h
    if newest > state.newest_ts:
        v1 = v1 * math.exp(-(newest - state.newest_ts) / HOUR_MS)
        v24 = v24 * math.exp(-(newest - state.newest_ts) / DAY_MS)
    day_cutoff = newest - DAY_MS
    merchants_24h = sum(1 for last in merchants.values() if last >= day_cutoff)
    values = [
        math.log1p(tx.amount),
        z,
        math.log1p(tx.amount) - math.log1p(state.mean) if known else 0.0,
        math.log1p(state.count),
        math.log1p(gap_s),
        v1,
        v24,
        math.log1p(merchants_24h),
        1.0 if known and tx.merchant_id not in merchants else 0.0,
        1.0 if known and tx.device_id not in devices else 0.0,
        1.0 if known and tx.country not in countries else 0.0,
        1.0 if known and tx.country != state.last_country else 0.0,
    ]
    count = state.count + 1
    delta = tx.amount - state.mean
    mean = state.mean + delta / count
    _reference_remember(merchants, tx.merchant_id, tx.ts, day_cutoff)
    _reference_remember(devices, tx.device_id, tx.ts, newest - 30 * DAY_MS)
    _reference_remember(countries, tx.country, tx.ts, newest - 30 * DAY_MS)
    in_order = tx.ts >= state.last_ts
    return RiskFeatureState(
        count=count,
        mean=mean,
        m2=state.m2 + delta * (tx.amount - mean),
        last_ts=tx.ts if in_order else state.last_ts,
        newest_ts=newest,
        velocity_1h=v1 + math.exp(-(newest - tx.ts) / HOUR_MS),
        velocity_24h=v24 + math.exp(-(newest - tx.ts) / DAY_MS),
        last_country=tx.country if in_order else state.last_country,
        merchants=merchants,
        devices=devices,
        countries=countries,
    ), values


def _bits(values: Sequence[float]) -> list[str]:
    return [float.hex(v) + ("-" if math.copysign(1.0, v) < 0 else "+") for v in values]


LONG_EVENTS = st.lists(
    st.builds(
        _tx,
        amount=AMOUNTS.filter(lambda a: a > 0),
        ts=st.integers(T0 - 40 * DAY_MS, T0 + 40 * DAY_MS) | st.integers(T0 - 2 * HOUR_MS, T0 + 2 * HOUR_MS),
        merchant=st.sampled_from([f"m{i}" for i in range(90)]),
        device=st.sampled_from([f"d{i}" for i in range(70)]),
        country=st.sampled_from(["US", "FR", "DE", "JP"]),
    ),
    min_size=1,
    max_size=160,
)


@settings(max_examples=150, deadline=None)
@given(events=EVENTS | LONG_EVENTS)
def test_advance_equals_the_plain_formulas_bit_for_bit(events: list[TransactionView]) -> None:
    """Same values (sign of zero included), same state bytes (dict order included) as the plain formulas, on
    sequences with late events, stale entries, more than MAX_TRACKED merchants/devices and extreme amounts."""
    fast = slow = RiskFeatureState()
    for tx in events:
        fast, fast_values = advance(fast, tx)
        slow, slow_values = _reference_advance(slow, tx)
        assert _bits(fast_values) == _bits(slow_values)
        assert _encoded(fast) == _encoded(slow)
        assert list(fast.merchants) == list(slow.merchants) and list(fast.devices) == list(slow.devices)
