"""Risk policy: threshold validation, rule firing, and the escalation order of `decide`.

`decide` takes the rules that fired (`_fired`), and a model verdict is followed by the top model factors
(`_model`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.exceptions import OperatorConfigError, OperatorError
from operators.risk.features import FEATURE_NAMES
from operators.risk.policy import DEFAULT_RULES, POPULATION_STATS, RiskThresholds, decide
from operators.risk.rules import FeatureAtLeast as FeatureRule

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}
SEVERITY = {"approve": 0, "review": 1, "block": 2}
QUIET = np.zeros(len(FEATURE_NAMES), dtype=np.float32)  # fires no default rule


def _checks(rule: FeatureRule) -> tuple[tuple[str, float], ...]:
    return ((rule.feature, rule.threshold), *rule.also.items())


def _fired(vector: np.ndarray, rules: tuple[FeatureRule, ...] = DEFAULT_RULES) -> tuple[FeatureRule, ...]:
    return tuple(rule for rule in rules if rule.fires_on(vector))


def _model(verdict: str, vector: np.ndarray) -> list[str]:
    """The model's reasons: its verdict, then the top factors of `vector`."""
    return [verdict, *(f"model:{name}" for name in POPULATION_STATS.top_factors(vector))]


def _at_threshold(rule: FeatureRule, below: str | None = None) -> np.ndarray:
    """A vector sitting exactly on every threshold of `rule` (just under the one named `below`)."""
    vector = QUIET.copy()
    for name, limit in _checks(rule):
        value = np.float32(limit)
        if float(value) < limit:  # float32 rounded down: step up so the vector is really at the threshold
            value = np.nextafter(value, np.float32(np.inf))
        if name == below:
            value = np.nextafter(np.float32(limit), np.float32(-np.inf))
            while float(value) >= limit:
                value = np.nextafter(value, np.float32(-np.inf))
        vector[IDX[name]] = value
    return vector


# ------------------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("review", "block"),
    [
        (0.0, 0.7),
        (-0.1, 0.7),
        (0.8, 0.7),
        (0.3, 1.0000001),
        (0.3, 2.0),
        (1.5, 1.5),
        (math.nan, 0.7),
        (0.3, math.nan),
        (math.nan, math.nan),
        (0.3, math.inf),
        (-math.inf, 0.7),
    ],
)
def test_bad_thresholds_are_refused_with_the_values_named(review: float, block: float) -> None:
    with pytest.raises(OperatorConfigError) as info:
        RiskThresholds(review=review, block=block)
    assert isinstance(info.value, OperatorError)
    assert f"review={review}" in str(info.value) and f"block={block}" in str(info.value)


@pytest.mark.parametrize(("review", "block"), [(0.3, 0.7), (0.5, 0.5), (1.0, 1.0), (1e-9, 1.0), (0.01, 0.02)])
def test_good_thresholds_are_kept(review: float, block: float) -> None:
    thresholds = RiskThresholds(review=review, block=block)
    assert (thresholds.review, thresholds.block) == (review, block)


def test_default_thresholds_are_valid() -> None:
    thresholds = RiskThresholds()
    assert 0 < thresholds.review <= thresholds.block <= 1


# ------------------------------------------------------------------------------------------- rules


def test_default_rules_reference_real_features_and_have_unique_codes() -> None:
    assert len({rule.code for rule in DEFAULT_RULES}) == len(DEFAULT_RULES)
    for rule in DEFAULT_RULES:
        assert all(name in IDX for name, _ in _checks(rule)), rule
    assert not any(rule.fires_on(QUIET) for rule in DEFAULT_RULES)


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=[r.code for r in DEFAULT_RULES])
def test_each_rule_fires_at_its_thresholds_and_not_below_any_of_them(rule: FeatureRule) -> None:
    assert rule.fires_on(_at_threshold(rule))
    for name, _ in _checks(rule):
        assert not rule.fires_on(_at_threshold(rule, below=name)), name


# ----------------------------------------------------------------------------------------- decide


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=[r.code for r in DEFAULT_RULES])
def test_a_fired_rule_means_at_least_review_and_is_listed(rule: FeatureRule) -> None:
    thresholds = RiskThresholds()
    vector = _at_threshold(rule)
    decision, reasons = decide(0.0, vector, thresholds, _fired(vector))
    assert decision == "review" and rule.code in reasons
    assert "model_high_score" not in reasons and "model_elevated_score" not in reasons
    assert not any(reason.startswith("model:") for reason in reasons)
    decision, reasons = decide(thresholds.block, vector, thresholds, _fired(vector))
    assert decision == "block" and reasons[-3:] == _model("model_high_score", vector) and rule.code in reasons


def test_score_alone_escalates_at_the_thresholds() -> None:
    thresholds = RiskThresholds(review=0.25, block=0.8)
    below_review = math.nextafter(thresholds.review, 0.0)
    below_block = math.nextafter(thresholds.block, 0.0)
    fired = _fired(QUIET)
    assert decide(0.0, QUIET, thresholds, fired) == ("approve", [])
    assert decide(below_review, QUIET, thresholds, fired) == ("approve", [])
    assert decide(thresholds.review, QUIET, thresholds, fired) == ("review", _model("model_elevated_score", QUIET))
    assert decide(below_block, QUIET, thresholds, fired) == ("review", _model("model_elevated_score", QUIET))
    assert decide(thresholds.block, QUIET, thresholds, fired) == ("block", _model("model_high_score", QUIET))
    assert decide(1.0, QUIET, thresholds, fired) == ("block", _model("model_high_score", QUIET))


def test_no_rules_means_the_score_decides() -> None:
    vector = _at_threshold(DEFAULT_RULES[0])
    assert decide(0.0, vector, RiskThresholds(), ()) == ("approve", [])


def test_all_rules_listed_in_rule_order() -> None:
    vector = QUIET.copy()
    for rule in DEFAULT_RULES:
        for name, limit in _checks(rule):
            vector[IDX[name]] = max(vector[IDX[name]], np.float32(limit) + np.float32(1.0))
    decision, reasons = decide(0.9, vector, RiskThresholds(), _fired(vector))
    assert decision == "block"
    assert reasons == [*(rule.code for rule in DEFAULT_RULES), *_model("model_high_score", vector)]


VECTORS = st.lists(
    st.floats(min_value=-20, max_value=20, width=32), min_size=len(FEATURE_NAMES), max_size=len(FEATURE_NAMES)
).map(lambda xs: np.array(xs, dtype=np.float32))
THRESHOLDS = st.tuples(st.floats(0.001, 1.0), st.floats(0.001, 1.0)).map(
    lambda pair: RiskThresholds(review=min(pair), block=max(pair))
)


@settings(max_examples=300, deadline=None)
@given(score=st.floats(0.0, 1.0), vector=VECTORS, thresholds=THRESHOLDS, bump=st.floats(0.0, 1.0))
def test_decide_escalation_properties(
    score: float, vector: np.ndarray, thresholds: RiskThresholds, bump: float
) -> None:
    decision, reasons = decide(score, vector, thresholds, _fired(vector))
    fired = [
        rule.code
        for rule in DEFAULT_RULES
        if all(float(vector[IDX[name]]) >= limit for name, limit in _checks(rule))
    ]
    assert reasons[: len(fired)] == fired
    model_reasons = reasons[len(fired):]
    if score >= thresholds.block:
        assert decision == "block" and model_reasons == _model("model_high_score", vector)
    elif score >= thresholds.review:
        assert decision == "review" and model_reasons == _model("model_elevated_score", vector)
    else:
        assert model_reasons == []
        assert decision == ("review" if fired else "approve")
    if fired:
        assert decision in ("review", "block")
    # A higher score never gives a milder decision, and the rule reasons do not depend on the score.
    higher = min(1.0, score + bump)
    decision_higher, reasons_higher = decide(higher, vector, thresholds, _fired(vector))
    assert SEVERITY[decision_higher] >= SEVERITY[decision]
    assert reasons_higher[: len(fired)] == fired


TIED_VECTORS = st.lists(
    st.sampled_from([*POPULATION_STATS.mean, 0.0, 1.0, -1.0]) | st.floats(-20, 20, width=32),
    min_size=len(FEATURE_NAMES),
    max_size=len(FEATURE_NAMES),
)


@settings(max_examples=300, deadline=None)
@given(vector=TIED_VECTORS, k=st.integers(0, len(FEATURE_NAMES) + 1))
def test_top_factors_are_the_largest_standardised_values_ties_in_feature_order(vector: list[float], k: int) -> None:
    """The definition: sort by (-|z|, index) (ties, e.g. several features at their mean, in FEATURE_NAMES order)."""
    stats = POPULATION_STATS
    z = [abs((x - m) / s) for x, m, s in zip(vector, stats.mean, stats.std, strict=True)]
    expected = [FEATURE_NAMES[i] for i in sorted(range(len(z)), key=lambda i: (-z[i], i))[:k]]
    assert stats.top_factors(vector, k) == expected
    assert stats.top_factors(np.array(vector, dtype=np.float64), k) == expected
