"""The synthetic transaction stream: deterministic, schema-valid, sorted, with bounded fraud base rates."""

from __future__ import annotations

import msgspec
import pytest

from models.rules import RISK_FEATURE_NAMES
from models.synthetic import FRAUD_PATTERNS, generate_transactions
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
    events = generate_transactions(10_000, seed=3, fraud_rate=fraud_rate)
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
