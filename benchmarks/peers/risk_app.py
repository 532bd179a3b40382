"""The risk scoring step the peer applications share: the project's own features, rules, policy and model.

A user writing the risk pipeline on another engine would call exactly these: fold the transaction into the
account's features (`operators.risk.features.update`), run the ONNX model from the registry on the new
vector, evaluate the rules (`operators.risk.rules.RuleSet`) and decide (`operators.risk.policy.decide`),
then emit a result shaped like the project's `RiskResult`. What the engine stores per account is
`AccountState`; how it stores it (pickled, JSON) is the engine's business.

Not done here (the engines' jobs, or not needed for the benchmark's input): dead letters for malformed
records and dropping producer retries by event id (the synthetic input has neither).
"""

from __future__ import annotations

import time

import msgspec

from models.registry import ModelRegistry
from operators.risk.features import RiskFeatureState, TransactionView, update
from operators.risk.policy import POPULATION_STATS, FeatureStats, RiskThresholds, decide
from operators.risk.rules import DEFAULT_RULES, RuleSet
from operators.risk.schemas import RiskResult, Transaction


class AccountState(msgspec.Struct, kw_only=True):
    """What a peer keeps per account: incremental features, recent event times (for rules), a version."""

    features: RiskFeatureState = msgspec.field(default_factory=RiskFeatureState)
    recent_ts: list[int] = msgspec.field(default_factory=list)
    version: int = 0


class RiskScorer:
    """Scores one transaction against its account's state with the registry's model (`model_ref`)."""

    def __init__(self, model_ref: str = "risk") -> None:
        self.model = ModelRegistry().load_ref(model_ref)
        self.rules = RuleSet(DEFAULT_RULES)
        self.thresholds = RiskThresholds()
        self.stats = FeatureStats.from_manifest(self.model.manifest) or POPULATION_STATS

    def score(self, tx: Transaction, state: AccountState | None) -> tuple[AccountState, RiskResult]:
        """The account's new state and the result for `tx` (the same score, decision and reasons as the
        project's `RiskOperator` for the same history)."""
        previous = state if state is not None else AccountState()
        view = TransactionView(tx.amount, tx.merchant_id, tx.country, tx.device_id, tx.ts)
        features, vector = update(previous.features, view)
        outputs = self.model.run({"features": vector.reshape(1, -1)})
        score = round(float(outputs["probability"].reshape(-1)[0]), 6)
        outcome = self.rules.evaluate(tx, previous.features, previous.recent_ts, vector)
        decision, reasons = decide(score, vector, self.thresholds, outcome.fired, stats=self.stats)
        new_state = AccountState(features=features, recent_ts=outcome.recent_ts, version=previous.version + 1)
        result = RiskResult(
            event_id=tx.event_id,
            account_id=tx.account_id,
            score=score,
            decision=decision,
            reasons=reasons,
            model=self.model.ref,
            state_version=new_state.version,
            ts=tx.ts,
            scored_at=int(time.time() * 1000),
        )
        return new_state, result

    def score_dict(self, event: dict[str, object], saved: dict[str, object] | None) -> tuple[dict, dict]:
        """`score` on JSON-shaped values (a parsed event, the saved state as plain dicts and lists)."""
        tx = msgspec.convert(event, Transaction)
        state = msgspec.convert(saved, AccountState) if saved is not None else None
        new_state, result = self.score(tx, state)
        return msgspec.to_builtins(new_state), msgspec.to_builtins(result)
