"""Declarative risk rules: each kind fires exactly at its boundary, count_in_window with out-of-order events,
the rule state stays bounded, decisions and reasons are deterministic, and RiskOperator keeps the rule state
in its versioned state (older state versions still decode).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.registry import DEFAULT_ROOT, REGISTRY_ENV, ModelRegistry
from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.exceptions import OperatorConfigError
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, TransactionView, update
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator, RiskState
from operators.risk.policy import (
    MODEL_FACTOR_PREFIX,
    POPULATION_STATS,
    SEVERITY,
    FeatureStats,
    RiskThresholds,
    decide,
)
from operators.risk.rules import (
    DEFAULT_RULES,
    MAX_RECENT_TIMESTAMPS,
    MAX_WINDOW_MINUTES,
    MINUTE_MS,
    AmountAbove,
    CountInWindow,
    CountryChangeWithin,
    FeatureAtLeast,
    NewDeviceAndCountry,
    Rule,
    RuleConfigError,
    RuleContext,
    RuleSet,
)
from operators.risk.schemas import Transaction
from pipelines.risk.training import risk_dataset
from state import MemoryVersionedStore
from state.codec import MsgpackCodec

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def tx(
    ts: int,
    *,
    amount: float = 10.0,
    currency: str = "EUR",
    country: str = "DE",
    device: str = "d1",
    merchant: str = "m1",
    account: str = "a1",
    n: int = 0,
) -> Transaction:
    """A transaction at event time `ts`."""
    return Transaction(
        event_id=f"e{n}-{ts}",
        account_id=account,
        amount=amount,
        currency=currency,
        merchant_id=merchant,
        country=country,
        device_id=device,
        ts=ts,
    )


class Harness:
    """Feeds events through the features and a RuleSet, one account state each, like RiskOperator does."""

    def __init__(self, rules: RuleSet | list[Rule]) -> None:
        self.rules = rules if isinstance(rules, RuleSet) else RuleSet(rules)
        self.features: dict[str, RiskFeatureState] = defaultdict(RiskFeatureState)
        self.recent: dict[str, list[int]] = defaultdict(list)

    def feed(self, event: Transaction) -> list[str]:
        """Fold `event` in; return the codes of the rules that fired on it."""
        before = self.features[event.account_id]
        view = TransactionView(event.amount, event.merchant_id, event.country, event.device_id, event.ts)
        self.features[event.account_id], vector = update(before, view)
        outcome = self.rules.evaluate(event, before, self.recent[event.account_id], vector)
        self.recent[event.account_id] = outcome.recent_ts
        return [rule.code for rule in outcome.fired]

    def last(self, events: list[Transaction]) -> list[str]:
        """Feed all `events`; the codes fired on the last one."""
        fired: list[str] = []
        for event in events:
            fired = self.feed(event)
        return fired


def _context(event: Transaction, recent: list[int] | None = None) -> RuleContext:
    return RuleContext(event, RiskFeatureState(), np.zeros(len(FEATURE_NAMES), dtype=np.float32), recent or [])


# ------------------------------------------------------------------------------------- amount_above


def test_amount_above_fires_strictly_above_the_limit() -> None:
    rule = AmountAbove(code="big", amount=100.0)
    assert not rule.fires(_context(tx(T0, amount=100.0)))
    assert not rule.fires(_context(tx(T0, amount=math.nextafter(100.0, 0.0))))
    assert rule.fires(_context(tx(T0, amount=math.nextafter(100.0, math.inf))))


def test_amount_above_per_currency_overrides_the_default_and_missing_currency_never_fires() -> None:
    rule = AmountAbove(code="big", amount=100.0, per_currency={"JPY": 15_000.0, "EUR": 50.0})
    assert not rule.fires(_context(tx(T0, amount=50.0, currency="EUR")))
    assert rule.fires(_context(tx(T0, amount=math.nextafter(50.0, math.inf), currency="EUR")))
    assert not rule.fires(_context(tx(T0, amount=15_000.0, currency="JPY")))
    assert rule.fires(_context(tx(T0, amount=15_000.01, currency="JPY")))
    assert not rule.fires(_context(tx(T0, amount=100.0, currency="USD")))  # the default limit
    assert rule.fires(_context(tx(T0, amount=100.01, currency="USD")))
    only_eur = AmountAbove(code="big_eur", per_currency={"EUR": 50.0})
    assert not only_eur.fires(_context(tx(T0, amount=1e9, currency="USD")))
    assert only_eur.fires(_context(tx(T0, amount=50.5, currency="EUR")))


# ---------------------------------------------------------------------------------- count_in_window


def test_count_in_window_fires_at_the_window_edge_and_not_one_ms_later() -> None:
    rule = CountInWindow(code="burst", count=3, window_minutes=10)
    window = 10 * MINUTE_MS
    assert Harness([rule]).last([tx(T0), tx(T0 + MINUTE_MS), tx(T0 + window)]) == ["burst"]
    assert Harness([rule]).last([tx(T0), tx(T0 + MINUTE_MS), tx(T0 + window + 1)]) == []


def test_count_in_window_fires_at_count_and_not_one_below() -> None:
    rule = CountInWindow(code="burst", count=4, window_minutes=5)
    harness = Harness([rule])
    fired = [harness.feed(tx(T0 + i * 1000, n=i)) for i in range(6)]
    assert fired == [[], [], [], ["burst"], ["burst"], ["burst"]]


def test_count_in_window_counts_this_event_so_count_one_always_fires() -> None:
    harness = Harness([CountInWindow(code="any", count=1, window_minutes=1)])
    assert harness.feed(tx(T0)) == ["any"]


def test_count_in_window_is_per_account() -> None:
    harness = Harness([CountInWindow(code="burst", count=2, window_minutes=10)])
    assert harness.feed(tx(T0, account="a")) == []
    assert harness.feed(tx(T0 + 1, account="b")) == []
    assert harness.feed(tx(T0 + 2, account="a")) == ["burst"]


def test_count_in_window_with_out_of_order_events() -> None:
    rule = CountInWindow(code="burst", count=3, window_minutes=10)
    harness = Harness([rule])
    assert harness.feed(tx(T0 + 10 * MINUTE_MS)) == []
    # Late events: T0+10m is retained but after their windows [ts-10m, ts], so it does not count for them.
    assert harness.feed(tx(T0 + 1 * MINUTE_MS)) == []
    assert harness.feed(tx(T0 + 2 * MINUTE_MS)) == []
    assert harness.feed(tx(T0 + 3 * MINUTE_MS)) == ["burst"]  # T0+1m, T0+2m and itself
    assert harness.recent["a1"] == [T0 + m * MINUTE_MS for m in (1, 2, 3, 10)]
    assert harness.feed(tx(T0 + 11 * MINUTE_MS)) == ["burst"]  # all five in [T0+1m, T0+11m]
    assert harness.feed(tx(T0 + 30 * MINUTE_MS)) == []
    assert harness.recent["a1"] == [T0 + 30 * MINUTE_MS]


def test_a_very_late_event_is_scored_with_a_lower_bound_count_never_below_one() -> None:
    rule = CountInWindow(code="burst", count=2, window_minutes=10)
    harness = Harness([rule])
    harness.feed(tx(T0))
    harness.feed(tx(T0 + 100 * MINUTE_MS))  # T0 is pruned: older than the newest minus the window
    assert harness.recent["a1"] == [T0 + 100 * MINUTE_MS]
    event = tx(T0 + MINUTE_MS)  # truly 2 in [T0-9m, T0+1m], but T0 is gone
    seen = harness.rules.remember(harness.recent["a1"], event.ts)
    ctx = RuleContext(event, harness.features["a1"], np.zeros(len(FEATURE_NAMES), np.float32), seen)
    assert rule.count_for(ctx) == 1
    assert harness.feed(event) == []
    assert harness.recent["a1"] == [T0 + 100 * MINUTE_MS]  # the late time is not kept either


WINDOW_MIN = 10
OFFSETS = st.lists(st.integers(0, 3 * WINDOW_MIN * MINUTE_MS), max_size=400)


def _true_count(times: list[int], ts: int, window_ms: int) -> int:
    return sum(1 for t in times if ts - window_ms <= t <= ts)


@settings(max_examples=60, deadline=None)
@given(offsets=OFFSETS, count=st.integers(1, MAX_RECENT_TIMESTAMPS), in_order=st.booleans())
def test_rule_state_stays_bounded_and_counts_are_exact_in_order_and_lower_bounds_out_of_order(
    offsets: list[int], count: int, in_order: bool
) -> None:
    rule = CountInWindow(code="burst", count=count, window_minutes=WINDOW_MIN)
    window = WINDOW_MIN * MINUTE_MS
    rules = RuleSet([rule, CountInWindow(code="short", count=1, window_minutes=1)])
    times = sorted(T0 + o for o in offsets) if in_order else [T0 + o for o in offsets]
    recent: list[int] = []
    processed: list[int] = []
    before = RiskFeatureState()
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for ts in times:
        event = tx(ts)
        processed.append(ts)
        seen = rules.remember(recent, ts)
        counted = rule.count_for(RuleContext(event, before, vector, seen))
        truth = _true_count(processed, ts, window)
        assert 1 <= counted <= truth
        outcome = rules.evaluate(event, before, recent, vector)
        assert ("burst" in [r.code for r in outcome.fired]) == (counted >= count)
        if in_order:
            assert (counted >= count) == (truth >= count)
        recent = outcome.recent_ts
        assert len(recent) <= MAX_RECENT_TIMESTAMPS
        assert recent == sorted(recent)
        assert all(t >= max(processed) - window for t in recent)


def test_no_count_rule_means_no_rule_state() -> None:
    harness = Harness(list(DEFAULT_RULES))
    for i in range(20):
        harness.feed(tx(T0 + i))
    assert harness.rules.window_ms == 0 and harness.recent["a1"] == []


def test_rule_state_is_bounded_by_the_largest_window() -> None:
    rules = RuleSet(
        [CountInWindow(code="short", count=2, window_minutes=1), CountInWindow(code="long", count=50, window_minutes=5)]
    )
    assert rules.window_ms == 5 * MINUTE_MS
    recent: list[int] = []
    for i in range(1000):
        recent = rules.prune(rules.remember(recent, T0 + i * 1000))
    assert len(recent) == min(MAX_RECENT_TIMESTAMPS, 5 * 60 + 1)
    assert recent[-1] - recent[0] <= 5 * MINUTE_MS


# ---------------------------------------------------------------------------- country_change_within


def test_country_change_within_fires_at_the_window_edge_and_not_one_ms_later() -> None:
    rule = CountryChangeWithin(code="travel", window_minutes=30)
    edge = 30 * MINUTE_MS
    assert Harness([rule]).last([tx(T0, country="DE"), tx(T0 + edge, country="FR")]) == ["travel"]
    assert Harness([rule]).last([tx(T0, country="DE"), tx(T0 + edge + 1, country="FR")]) == []


def test_country_change_within_needs_a_change_and_a_previous_transaction() -> None:
    rule = CountryChangeWithin(code="travel", window_minutes=30)
    assert Harness([rule]).last([tx(T0, country="FR")]) == []
    assert Harness([rule]).last([tx(T0, country="DE"), tx(T0 + 1, country="DE")]) == []
    # compares with the previous transaction only: DE -> FR -> FR
    assert Harness([rule]).last([tx(T0, country="DE"), tx(T0 + 1, country="FR"), tx(T0 + 2, country="FR")]) == []


def test_country_change_within_for_a_late_event_uses_the_absolute_gap() -> None:
    rule = CountryChangeWithin(code="travel", window_minutes=30)
    events = [tx(T0, country="DE"), tx(T0 + 60 * MINUTE_MS, country="DE")]
    assert Harness([rule]).last([*events, tx(T0 + 30 * MINUTE_MS, country="FR")]) == ["travel"]
    assert Harness([rule]).last([*events, tx(T0 + 30 * MINUTE_MS - 1, country="FR")]) == []


# --------------------------------------------------------------------------- new_device_and_country


def test_new_device_and_country_needs_both_and_a_known_account() -> None:
    rule = NewDeviceAndCountry(code="takeover")
    home = tx(T0, device="d1", country="DE")
    assert Harness([rule]).last([tx(T0, device="d9", country="FR")]) == []  # first transaction: nothing is new
    assert Harness([rule]).last([home, tx(T0 + 1, device="d2", country="FR")]) == ["takeover"]
    assert Harness([rule]).last([home, tx(T0 + 1, device="d2", country="DE")]) == []
    assert Harness([rule]).last([home, tx(T0 + 1, device="d1", country="FR")]) == []


def test_new_device_and_country_kind_agrees_with_the_default_feature_rule() -> None:
    kind = NewDeviceAndCountry(code="takeover")
    default = next(rule for rule in DEFAULT_RULES if rule.code == "new_device_and_country")
    records = generate_transactions(1500, seed=4)
    harness = Harness([kind, default])
    agree = 0
    for record in records:
        event = msgspec.convert({k: v for k, v in record.items() if k not in ("label", "pattern")}, Transaction)
        fired = harness.feed(event)
        assert ("takeover" in fired) == ("new_device_and_country" in fired)
        agree += "takeover" in fired
    assert agree > 0


# --------------------------------------------------------------------------------- feature_at_least


def _at(value: float) -> np.float32:
    """The smallest float32 >= `value`."""
    v = np.float32(value)
    return v if float(v) >= value else np.nextafter(v, np.float32(np.inf))


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_feature_at_least_fires_at_the_threshold_and_not_just_below_for_every_feature(name: str) -> None:
    rule = FeatureAtLeast(code="f", feature=name, threshold=1.3)
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    vector[IDX[name]] = _at(1.3)
    assert rule.fires_on(vector)
    vector[IDX[name]] = np.nextafter(_at(1.3), np.float32(-np.inf))
    assert not rule.fires_on(vector)


def test_feature_at_least_needs_every_also_check() -> None:
    rule = FeatureAtLeast(code="f", feature="amount_z", threshold=4.0, also={"log_count": 1.79})
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    vector[IDX["amount_z"]] = 4.0
    assert not rule.fires_on(vector)
    vector[IDX["log_count"]] = _at(1.79)
    assert rule.fires_on(vector)
    assert rule.checks == (("amount_z", 4.0), ("log_count", 1.79))


# ----------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: AmountAbove(code="a"), "amount"),
        (lambda: AmountAbove(code="a", amount=-1.0), "amount"),
        (lambda: AmountAbove(code="a", amount=math.nan), "amount"),
        (lambda: AmountAbove(code="a", per_currency={"EUR": 0.0}), "per_currency.EUR"),
        (lambda: CountInWindow(code="a", count=0, window_minutes=1), "count"),
        (lambda: CountInWindow(code="a", count=MAX_RECENT_TIMESTAMPS + 1, window_minutes=1), "count"),
        (lambda: CountInWindow(code="a", count=2, window_minutes=0), "window_minutes"),
        (lambda: CountInWindow(code="a", count=2, window_minutes=MAX_WINDOW_MINUTES + 1), "window_minutes"),
        (lambda: CountryChangeWithin(code="a", window_minutes=-5), "window_minutes"),
        (lambda: FeatureAtLeast(code="a", feature="amount", threshold=1.0), "feature"),
        (lambda: FeatureAtLeast(code="a", feature="amount_z", threshold=math.inf), "threshold"),
        (lambda: FeatureAtLeast(code="a", feature="amount_z", threshold=1.0, also={"zz": 1.0}), "also.zz"),
        (lambda: RuleSet([NewDeviceAndCountry(code="x"), NewDeviceAndCountry(code="x")]), "rules[1].code"),
        (lambda: RuleSet([NewDeviceAndCountry(code="model_high_score")]), "rules[0].code"),
        (lambda: RuleSet(["not a rule"]), "rules[0]"),  # type: ignore[list-item]
    ],
)
def test_invalid_rules_raise_naming_the_field(make: Any, field: str) -> None:
    with pytest.raises(RuleConfigError) as info:
        make()
    assert isinstance(info.value, OperatorConfigError)
    assert str(info.value).startswith(f"{field}: ")


# ----------------------------------------------------------------------------- policy with actions


def test_rule_actions_set_the_minimum_decision_and_reasons_keep_rule_order() -> None:
    quiet = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    review = NewDeviceAndCountry(code="takeover")
    block = AmountAbove(code="huge", amount=1.0, action="block")
    thresholds = RiskThresholds()
    assert decide(0.0, quiet, thresholds, (review,)) == ("review", ["takeover"])
    assert decide(0.0, quiet, thresholds, (block,)) == ("block", ["huge"])
    assert decide(0.0, quiet, thresholds, (block, review)) == ("block", ["huge", "takeover"])
    decision, reasons = decide(0.5, quiet, thresholds, (review, block))
    factors = [MODEL_FACTOR_PREFIX + name for name in POPULATION_STATS.top_factors(quiet)]
    assert decision == "block" and reasons == ["takeover", "huge", "model_elevated_score", *factors]
    assert len(factors) == 2


@settings(max_examples=200, deadline=None)
@given(
    score=st.floats(0.0, 1.0),
    actions=st.lists(st.sampled_from(["review", "block"]), max_size=4),
    values=st.lists(st.floats(-50, 50, width=32), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)),
)
def test_decisions_and_reasons_are_deterministic_and_at_least_every_action(
    score: float, actions: list[str], values: list[float]
) -> None:
    vector = np.array(values, dtype=np.float32)
    fired = tuple(AmountAbove(code=f"r{i}", amount=1.0, action=a) for i, a in enumerate(actions))  # type: ignore[arg-type]
    first = decide(score, vector, RiskThresholds(), fired)
    assert decide(score, vector.copy(), RiskThresholds(), fired) == first
    decision, reasons = first
    assert all(SEVERITY[decision] >= SEVERITY[a] for a in actions)
    assert reasons[: len(fired)] == [r.code for r in fired]
    model = reasons[len(fired):]
    assert model == [] or (len(model) == 3 and all(m.startswith(MODEL_FACTOR_PREFIX) for m in model[1:]))


def test_top_factors_rank_by_standardised_deviation_with_ties_in_feature_order() -> None:
    stats = FeatureStats(mean=(0.0,) * len(FEATURE_NAMES), std=(1.0,) * len(FEATURE_NAMES))
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    vector[IDX["velocity_1h"]] = 3.0
    vector[IDX["amount_z"]] = -5.0
    assert stats.top_factors(vector) == ["amount_z", "velocity_1h"]
    assert stats.top_factors(vector, k=3) == ["amount_z", "velocity_1h", FEATURE_NAMES[0]]
    assert stats.top_factors(np.zeros(len(FEATURE_NAMES), np.float32)) == list(FEATURE_NAMES[:2])
    assert stats.top_factors(vector, k=0) == []


def test_feature_stats_from_a_manifest() -> None:
    n = len(FEATURE_NAMES)
    assert FeatureStats.from_manifest({"name": "risk"}) is None
    stats = FeatureStats.from_manifest({"name": "risk", "version": 3, "feature_mean": [1] * n, "feature_std": [2] * n})
    assert stats is not None and stats.mean == (1.0,) * n and stats.std == (2.0,) * n and "risk@3" in stats.source
    with pytest.raises(OperatorConfigError, match="12 means"):
        FeatureStats.from_manifest({"mean": [0.0], "std": [1.0]})
    with pytest.raises(OperatorConfigError, match="std"):
        FeatureStats.from_manifest({"mean": [0.0] * n, "std": [0.0] * n})


def test_population_stats_are_what_the_documented_recipe_gives() -> None:
    features = risk_dataset(generate_transactions(20_000, seed=1)).features
    mean = features.mean(axis=0)
    std = np.maximum(features.std(axis=0), 1e-3)
    np.testing.assert_allclose(POPULATION_STATS.mean, mean, atol=1e-3)
    np.testing.assert_allclose(POPULATION_STATS.std, std, atol=1e-3)


# ------------------------------------------------------------------------------------ the operator


def _committed_context() -> OperatorContext:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(REGISTRY_ENV, raising=False)
        return OperatorContext(registry=ModelRegistry(DEFAULT_ROOT))


def test_operator_keeps_rule_state_in_its_versions_and_applies_block_actions() -> None:
    rules = [*DEFAULT_RULES, CountInWindow(code="burst_10m", count=3, window_minutes=10, action="block")]
    operator = RiskOperator(rules=rules)
    operator.open(_committed_context())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    state = store.key("a1")
    minutes = [10, 1, 2, 3, 11, 40]  # out of order: 1, 2, 3 arrive after 10
    results = [next(iter(operator.process(tx(T0 + m * MINUTE_MS, n=i), state, None))) for i, m in enumerate(minutes)]
    burst = ["burst_10m" in r.reasons for r in results]
    assert burst == [False, False, False, True, True, False]
    assert [r.reasons.index("burst_10m") for r, b in zip(results, burst, strict=True) if b] == [0, 0]  # rules first
    assert all(r.decision == "block" for r, b in zip(results, burst, strict=True) if b)
    assert [r.state_version for r in results] == list(range(1, len(minutes) + 1))
    stored = [state.as_of(v) for v in range(1, len(minutes) + 1)]
    assert all(s is not None and len(s.value.recent_ts) <= MAX_RECENT_TIMESTAMPS for s in stored)
    fifth = stored[4]
    assert fifth is not None and fifth.value.recent_ts == [T0 + m * MINUTE_MS for m in (1, 2, 3, 10, 11)]
    latest = state.get()
    assert latest is not None and latest.value.recent_ts == [T0 + 40 * MINUTE_MS]


def test_operator_decisions_and_reasons_are_deterministic_across_runs() -> None:
    rules = [
        *DEFAULT_RULES,
        AmountAbove(code="large", amount=400.0),
        CountInWindow(code="burst", count=4, window_minutes=30),
        CountryChangeWithin(code="travel", window_minutes=120, action="block"),
        NewDeviceAndCountry(code="takeover"),
    ]
    records = generate_transactions(800, seed=21)
    events = [msgspec.convert({k: v for k, v in r.items() if k not in ("label", "pattern")}, Transaction)
              for r in records]
    runs = []
    for _ in range(2):
        operator = RiskOperator(rules=rules)
        operator.open(_committed_context())
        store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
        out = []
        for event in events:
            result = next(iter(operator.process(event, store.key(event.account_id), None)))
            out.append(msgspec.json.encode(msgspec.structs.replace(result, scored_at=0)))
        runs.append(out)
    assert runs[0] == runs[1]
    fired = {code for line in runs[0] for code in msgspec.json.decode(line)["reasons"]}
    assert {"large", "burst"} <= fired


class _LegacyRiskState(msgspec.Struct, kw_only=True):
    """RiskState as it was before the rule state existed."""

    features: RiskFeatureState = msgspec.field(default_factory=RiskFeatureState)
    scored_features: list[float] = msgspec.field(default_factory=list)
    last_event_id: str = ""


def test_state_written_before_rule_state_existed_still_decodes() -> None:
    legacy = _LegacyRiskState(features=RiskFeatureState(count=3, last_ts=T0), scored_features=[1.0], last_event_id="e")
    decoded = RISK_STATE_CODEC.decode(MsgpackCodec(_LegacyRiskState).encode(legacy))
    assert isinstance(decoded, RiskState)
    assert decoded.recent_ts == [] and decoded.features.count == 3 and decoded.last_event_id == "e"


def test_operator_refuses_a_negative_number_of_factors() -> None:
    with pytest.raises(OperatorConfigError, match="top_factors"):
        RiskOperator(top_factors=-1)
