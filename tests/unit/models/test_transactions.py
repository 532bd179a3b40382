"""The synthetic transaction stream: deterministic, schema-valid, sorted, with bounded fraud base rates, and
free of generator artifacts (property tests over seeds and sizes): no instant gathers events, an account's
events are never 0 ms apart unless a fraud pattern puts them there, accounts open and go quiet during the
stream, and the daily profile holds."""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import pytest

from models.rules import RISK_FEATURE_NAMES
from models.synthetic import FRAUD_PATTERNS, generate_transactions
from models.synthetic.transactions import DAY_MS, HOUR_MS
from operators.risk.decoding import transaction_decoder
from operators.risk.features import FEATURE_NAMES
from operators.risk.schemas import Transaction


@pytest.fixture(scope="module")
def stream() -> list[dict[str, object]]:
    return generate_transactions(20_000, seed=11)


def test_deterministic_for_a_seed(stream: list[dict[str, object]]) -> None:
    assert generate_transactions(20_000, seed=11) == stream
    assert generate_transactions(20_000, seed=12) != stream


def test_every_event_decodes_as_a_transaction(stream: list[dict[str, object]]) -> None:
    decoder = transaction_decoder()
    for event in stream:
        decoded = decoder.decode(msgspec.json.encode(event))
        assert isinstance(decoded, Transaction), (event, decoded)


def test_sorted_unique_and_labelled(stream: list[dict[str, object]]) -> None:
    assert len(stream) == 20_000
    ts = [int(e["ts"]) for e in stream]  # type: ignore[call-overload]
    assert ts == sorted(ts)
    assert len({e["event_id"] for e in stream}) == len(stream)
    for e in stream:
        assert (e["label"] == 0) == (e["pattern"] == "legit")


@pytest.mark.parametrize("fraud_rate", [0.005, 0.01, 0.02])
def test_fraud_base_rate_is_within_bounds(fraud_rate: float) -> None:
    # 20k events: at 10k x 0.5 % a stream holds ~10 episodes, where a pattern may be missing by chance
    events = generate_transactions(20_000, seed=3, fraud_rate=fraud_rate)
    rate = sum(int(e["label"]) for e in events) / len(events)  # type: ignore[call-overload]
    assert abs(rate - fraud_rate) <= 0.001
    assert {e["pattern"] for e in events if e["label"] == 1} == set(FRAUD_PATTERNS)


def test_default_fraud_rate_and_accounts(stream: list[dict[str, object]]) -> None:
    rate = sum(int(e["label"]) for e in stream) / len(stream)  # type: ignore[call-overload]
    assert 0.005 <= rate <= 0.02
    accounts = {e["account_id"] for e in stream}
    assert 200 <= len(accounts) <= 20_000 // 60
    # Each account bills in one currency.
    currencies: dict[object, set[object]] = {}
    for e in stream:
        currencies.setdefault(e["account_id"], set()).add(e["currency"])
    assert all(len(c) == 1 for c in currencies.values())


def test_rules_feature_names_match_the_operator() -> None:
    assert tuple(FEATURE_NAMES) == RISK_FEATURE_NAMES


def test_tiny_streams_generate_exactly_n_events() -> None:
    from models.synthetic import generate_transactions

    for n in range(1, 12):
        assert len(generate_transactions(n, seed=11)) == n


SIZES_AND_SEEDS = [(500, 9), (3_000, 1), (30_000, 5), (60_000, 21)]


def _published(n: int, seed: int, **options: object) -> list[dict[str, object]]:
    """The stream as `publish` sends it (events in list order)."""
    return generate_transactions(n, seed, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "seed"), SIZES_AND_SEEDS)
@pytest.mark.parametrize("scenario", [False, True])
def test_no_instant_gathers_events_and_the_stream_is_sorted_as_published(n: int, seed: int, scenario: bool) -> None:
    events = _published(n, seed, emerging_from=0.4 if scenario else None, emerging_rate=0.015)
    ts = [int(e["ts"]) for e in events]  # type: ignore[call-overload]
    assert ts == sorted(ts)
    top = Counter(ts).most_common(1)[0][1]
    # at most 0.1 % of events on one millisecond (the old generator put 4-9 % on the span's last one)
    assert top <= max(1, n // 1000), (top, n)


@pytest.mark.parametrize(("n", "seed"), SIZES_AND_SEEDS)
def test_an_accounts_legitimate_events_are_never_0_ms_apart(n: int, seed: int) -> None:
    """Per-account inter-arrival times: no mass at zero beyond what the patterns create (none of them does
    either, but a fraud episode may start on the millisecond of the account's previous event by chance)."""
    last: dict[object, int] = {}
    zero = {0: 0, 1: 0}
    for e in _published(n, seed):
        t = int(e["ts"])  # type: ignore[call-overload]
        if e["account_id"] in last and t == last[e["account_id"]]:
            zero[int(e["label"])] += 1  # type: ignore[call-overload]
        last[e["account_id"]] = t
    assert zero[0] == 0, zero
    assert zero[1] <= max(1, n // 10_000), zero


@pytest.mark.parametrize(("n", "seed"), [(30_000, 5), (60_000, 21)])
def test_accounts_open_and_go_quiet_during_the_stream(n: int, seed: int) -> None:
    events = _published(n, seed)
    ts = np.array([int(e["ts"]) for e in events])  # type: ignore[call-overload]
    first_ts: dict[object, int] = {}
    last_ts: dict[object, int] = {}
    for e, t in zip(events, ts.tolist(), strict=True):
        first_ts.setdefault(e["account_id"], t)
        last_ts[e["account_id"]] = t
    start, end = int(ts.min()), int(ts.max())
    span = end - start
    opened_late = np.mean([t > start + 0.2 * span for t in first_ts.values()])
    quiet_early = np.mean([t < end - 0.2 * span for t in last_ts.values()])
    # ~25 % of accounts open during the stream and ~25 % go quiet (an always-active account has ~3 events a day)
    assert 0.12 < opened_late < 0.35 and 0.12 < quiet_early < 0.35, (opened_late, quiet_early)
    # the event rate stays level: no quarter of the span holds more than 30 % of the events
    quarters = np.histogram(ts, bins=4, range=(start, end + 1))[0] / len(ts)
    assert quarters.max() < 0.3, quarters


def test_the_daily_profile_holds_and_fraud_starts_after_the_accounts_have_history() -> None:
    events = _published(60_000, 3)
    ts = np.array([int(e["ts"]) for e in events])  # type: ignore[call-overload]
    legit = np.array([e["label"] == 0 for e in events])
    hours = ((ts[legit] - ts.min()) % DAY_MS) // HOUR_MS
    night, evening = np.isin(hours, [2, 3, 4]).mean(), np.isin(hours, [17, 18, 19]).mean()
    assert evening > 8 * night, (night, evening)  # the profile: 0.3-0.4 at night vs 5.5-6 in the evening
    span = ts.max() - ts.min()
    first_ts: dict[object, int] = {}
    for e, t in zip(events, ts.tolist(), strict=True):
        first_ts.setdefault(e["account_id"], t)
    fraud = [(e, t) for e, t in zip(events, ts.tolist(), strict=True) if e["label"] == 1]
    assert fraud and min(t for _, t in fraud) >= ts.min() + 0.1 * span
    # an episode's account opened at least 10 % of the span before it (its first event may come a little later)
    history = np.array([t - first_ts[e["account_id"]] for e, t in fraud])
    assert (history > 0).all() and np.mean(history > 0.05 * span) > 0.98
