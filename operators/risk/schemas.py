"""Event and result schemas of the risk pipeline (the public wire contract, JSON)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}\\Z")]
Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}\\Z")]
Decision = Literal["approve", "review", "block"]


class Transaction(msgspec.Struct, frozen=True, kw_only=True):
    """A card transaction. Unknown extra fields are ignored; `ts` is the event time in epoch milliseconds."""

    event_id: Id
    account_id: Id
    amount: float
    currency: Currency
    merchant_id: Id
    country: Country
    device_id: Id
    ts: int


class RiskResult(msgspec.Struct, frozen=True, kw_only=True):
    """The score of one transaction, the decision taken, why, and exactly what it was computed from."""

    event_id: str
    account_id: str
    score: float
    decision: Decision
    reasons: list[str]
    model: str
    state_version: int
    ts: int
    scored_at: int
