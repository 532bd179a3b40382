"""Turns a model score and the fired rules into a decision (`approve | review | block`) with reasons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.exceptions import OperatorConfigError
from operators.risk.features import FEATURE_NAMES

_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


@dataclass(frozen=True)
class RiskThresholds:
    """Score thresholds: `score >= block` blocks, `score >= review` reviews; any fired rule reviews at least."""

    review: float = 0.3
    block: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.block <= 1.0:
            raise OperatorConfigError(
                f"risk thresholds must satisfy 0 < review <= block <= 1, got review={self.review} "
                f"block={self.block}"
            )


@dataclass(frozen=True)
class FeatureRule:
    """A built-in rule on the feature vector: fires when `feature >= threshold` (all `also` too)."""

    code: str
    feature: str
    threshold: float
    also: tuple[tuple[str, float], ...] = ()

    def fires(self, features: np.ndarray) -> bool:
        """True if the rule fires on `features` (FEATURE_NAMES order)."""
        checks = ((self.feature, self.threshold), *self.also)
        return all(float(features[_INDEX[name]]) >= limit for name, limit in checks)


DEFAULT_RULES: tuple[FeatureRule, ...] = (
    FeatureRule("amount_far_above_norm", "amount_z", 4.0, (("log_count", 1.79),)),  # >= 5 prior txns
    FeatureRule("new_device_and_country", "new_device", 1.0, (("new_country", 1.0),)),
    FeatureRule("velocity_burst", "velocity_1h", 10.0),
    FeatureRule("many_merchants_24h", "distinct_merchants_24h", 2.77),  # log1p(15)
)


def decide(
    score: float, features: np.ndarray, thresholds: RiskThresholds, rules: tuple[FeatureRule, ...]
) -> tuple[str, list[str]]:
    """The decision and its reasons (fired rule codes, then the model's verdict if it escalated)."""
    reasons = [rule.code for rule in rules if rule.fires(features)]
    if score >= thresholds.block:
        return "block", [*reasons, "model_high_score"]
    if score >= thresholds.review:
        return "review", [*reasons, "model_elevated_score"]
    return ("review" if reasons else "approve"), reasons
