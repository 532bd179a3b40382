"""Turns a model score and the fired rules into a decision (`approve | review | block`) with reasons.

Decision: the most severe of (a) the score against the thresholds (`score >= block` blocks,
`score >= review` reviews) and (b) the `action` of every fired rule.

Reasons, in this order: the codes of the fired rules (rule order, i.e. config order); then, only when the
score reached a threshold, the model's verdict (`model_high_score` or `model_elevated_score`) followed by
the top model factors `model:<feature>`: the `top_k` features whose standardised value
`|(x - mean) / std|` is largest (ties: FEATURE_NAMES order). `mean`/`std` come from the model manifest when
it has them (`feature_mean`/`feature_std`, or `mean`/`std`), else `POPULATION_STATS`. This is a cheap,
deterministic "how unusual is this feature" attribution, not a gradient of the model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.exceptions import OperatorConfigError
from operators.risk.features import FEATURE_NAMES
from operators.risk.rules import DEFAULT_RULES, Rule
from operators.risk.schemas import Decision

__all__ = [
    "DEFAULT_RULES",
    "MODEL_ELEVATED_SCORE",
    "MODEL_FACTOR_PREFIX",
    "MODEL_HIGH_SCORE",
    "POPULATION_STATS",
    "SEVERITY",
    "FeatureStats",
    "RiskThresholds",
    "decide",
]

MODEL_HIGH_SCORE = "model_high_score"
MODEL_ELEVATED_SCORE = "model_elevated_score"
MODEL_FACTOR_PREFIX = "model:"
DEFAULT_TOP_FACTORS = 2
SEVERITY: dict[str, int] = {"approve": 0, "review": 1, "block": 2}
_BY_SEVERITY: tuple[Decision, ...] = ("approve", "review", "block")


@dataclass(frozen=True)
class RiskThresholds:
    """Score thresholds: `score >= block` blocks, `score >= review` reviews; a fired rule adds its action."""

    review: float = 0.3
    block: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.block <= 1.0:
            raise OperatorConfigError(
                f"risk thresholds must satisfy 0 < review <= block <= 1, got review={self.review} "
                f"block={self.block}"
            )


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature mean and standard deviation (FEATURE_NAMES order) used to rank the model factors."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        n = len(FEATURE_NAMES)
        if len(self.mean) != n or len(self.std) != n:
            raise OperatorConfigError(
                f"feature stats ({self.source or 'unnamed'}) need {n} means and stds (FEATURE_NAMES order), "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if not all(math.isfinite(m) for m in self.mean) or not all(math.isfinite(s) and s > 0 for s in self.std):
            raise OperatorConfigError(
                f"feature stats ({self.source or 'unnamed'}) need finite means and finite stds > 0, "
                f"got mean={list(self.mean)} std={list(self.std)}"
            )

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> FeatureStats | None:
        """The stats a model manifest declares (`feature_mean`/`feature_std` or `mean`/`std`), else None."""
        for mean_key, std_key in (("feature_mean", "feature_std"), ("mean", "std")):
            if mean_key in manifest and std_key in manifest:
                source = f"manifest of {manifest.get('name', '?')}@{manifest.get('version', '?')}"
                try:
                    mean = tuple(float(x) for x in manifest[mean_key])
                    std = tuple(float(x) for x in manifest[std_key])
                except (TypeError, ValueError) as exc:
                    raise OperatorConfigError(
                        f"{source}: `{mean_key}`/`{std_key}` must be lists of numbers: {exc}"
                    ) from None
                return cls(mean, std, source)
        return None

    def top_factors(self, features: np.ndarray | Sequence[float], k: int = DEFAULT_TOP_FACTORS) -> list[str]:
        """The names of the `k` features with the largest `|(x - mean) / std|` (ties: FEATURE_NAMES order)."""
        if k <= 0:
            return []
        values = features.tolist() if isinstance(features, np.ndarray) else features
        # float64 arithmetic, element by element (what numpy computed here before, without its per-call cost).
        z = [abs((float(x) - m) / s) for x, m, s in zip(values, self.mean, self.std, strict=True)]
        # Largest first, ties in FEATURE_NAMES order: a reversed sort is still stable.
        order = sorted(range(len(FEATURE_NAMES)), key=z.__getitem__, reverse=True)
        return [FEATURE_NAMES[i] for i in order[:k]]


#: Account-independent population statistics of the features: `risk_dataset(generate_transactions(20_000,
#: seed=1))` (mean, and std floored at 1e-3 as in training), rounded to 4 decimals; a test recomputes them.
POPULATION_STATS = FeatureStats(
    mean=(3.4055, 0.1255, -0.2104, 3.4759, 9.2751, 0.3558, 4.8726, 1.3567, 0.6271, 0.0149, 0.0078, 0.0143),
    std=(0.9728, 1.4997, 0.7260, 1.1874, 1.8544, 0.7027, 4.4771, 0.6308, 0.4836, 0.1212, 0.0880, 0.1187),
    source="population statistics of 20000 synthetic transactions (seed 1)",
)


def decide(
    score: float,
    features: np.ndarray | Sequence[float],
    thresholds: RiskThresholds,
    fired: Sequence[Rule] = (),
    *,
    stats: FeatureStats = POPULATION_STATS,
    top_k: int = DEFAULT_TOP_FACTORS,
) -> tuple[Decision, list[str]]:
    """The decision and its reasons for `score`, the event's `features` and the rules that `fired` on it.

    `fired` are the rules that fired (in rule order, e.g. `RuleSet.evaluate(...).fired`), not candidates.
    """
    if not fired and score < thresholds.review:  # the usual case, decided without building anything
        return "approve", []
    reasons = [rule.code for rule in fired]
    severity = max([SEVERITY[rule.action] for rule in fired]) if fired else 0
    if score >= thresholds.review:
        verdict = MODEL_HIGH_SCORE if score >= thresholds.block else MODEL_ELEVATED_SCORE
        severity = max(severity, SEVERITY["block"] if score >= thresholds.block else SEVERITY["review"])
        reasons.append(verdict)
        reasons.extend(MODEL_FACTOR_PREFIX + name for name in stats.top_factors(features, top_k))
    return _BY_SEVERITY[severity], reasons
