"""The risk pipeline's config type (`pipeline: risk`; the shipped defaults are `pipelines/risk/risk.yaml`)::

    pipeline: risk
    topics: {input: risk.transactions, output: risk.scores, dlq: risk.dlq}
    model: risk                  # the registry's current version; `risk@1` pins one
    routes:                      # optional: the first matching route picks the model (operators.routing)
      - {code: high_value, when: {amount: {at_least: 2000}}, model: risk@2}
    model_refresh_seconds: 2     # follow promotions of unpinned models (hot-swap); 0: never
    backends:                    # optional: model servers routes may name (operators.remote.backend.BackendConfig)
      server: {url: "http://127.0.0.1:8080", protocol: http, deadline_ms: 200, fallback: local}
    thresholds: {review: 0.3, block: 0.7}
    rules:                       # operators.risk.rules: amount_above, count_in_window, country_change_within,
      - {code: burst, kind: count_in_window, count: 5, window_minutes: 10, action: review}
    state: {retention_versions: 16, ttl_hours: 720, dedup_window_hours: 24}   # optional; each field optional

`risk_operator_from_config(cfg)` builds the `RiskOperator` a risk config describes; loading and error messages
are `pipelines.config`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import msgspec

from operators.risk.operator import RiskOperator
from operators.risk.policy import RiskThresholds
from operators.risk.rules import AnyRule, RuleSet, check_rules
from operators.risk.schemas import Transaction
from pipelines.config import FieldError, ModelPipelineConfig, Section, load_config
from pipelines.exceptions import ConfigError

#: The shipped risk config: the defaults (`DEFAULT_RULES`, `RiskThresholds()`, the default topics).
RISK_CONFIG_PATH = Path(__file__).resolve().with_name("risk.yaml")


class ThresholdsConfig(Section, frozen=True):
    """Score thresholds of the risk decision: `0 < review <= block <= 1`."""

    review: float
    block: float

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.block <= 1.0:
            raise FieldError(
                f"review: expected 0 < review <= block <= 1, got review={self.review}, block={self.block}"
            )

    def to_risk_thresholds(self) -> RiskThresholds:
        """The operator's `RiskThresholds`."""
        return RiskThresholds(review=self.review, block=self.block)


class RiskPipelineConfig(ModelPipelineConfig, frozen=True, tag="risk"):
    """The risk pipeline: decision thresholds and rules (in evaluation and reason order), and the model servers
    (`backends`, by name) its routes may send their events to."""

    MODEL_NAME: ClassVar[str] = "risk"
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = Transaction

    thresholds: ThresholdsConfig
    rules: tuple[AnyRule, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rules(self.rules)

    def rule_set(self) -> RuleSet:
        """The rules as the operator's `RuleSet`."""
        return RuleSet(self.rules)


def load_risk_config(path: str | os.PathLike[str] | None = None) -> RiskPipelineConfig:
    """The risk config at `path` (default: the shipped `risk.yaml`); `ConfigError` if bad or not a risk one."""
    config = load_config(RISK_CONFIG_PATH if path is None else path, pipeline="risk")
    assert isinstance(config, RiskPipelineConfig)
    return config


def risk_operator_from_config(cfg: RiskPipelineConfig) -> RiskOperator:
    """The `RiskOperator` of a risk config: thresholds, rules, the default model and routes (a `--model`
    given at `open` via `OperatorContext.model_ref` pins one model instead)."""
    if not isinstance(cfg, RiskPipelineConfig):
        raise ConfigError(f"risk_operator_from_config needs a risk config, got pipeline {cfg.pipeline!r}")
    return RiskOperator(
        thresholds=cfg.thresholds.to_risk_thresholds(), rules=cfg.rule_set(), model=cfg.model, routes=cfg.routes,
        dedup_window_ms=cfg.state.dedup_window_ms, dedup_max_ids=cfg.state.dedup_max_ids,
        ttl_ms=cfg.state.ttl_ms, backends=cfg.backend_configs(),
    )
