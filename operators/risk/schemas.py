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


class RiskResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The score of one transaction, the decision taken, why, and exactly what it was computed from.

    `model` is the model version that scored it; `backend` the model server it was scored on (absent: in-process);
    `fallback` (absent: false) says a remote backend failed for its batch and `model` is the route's local
    fallback. The two are left out of the JSON at their defaults, so results scored in-process are unchanged.
    """

    event_id: str
    account_id: str
    score: float
    decision: Decision
    reasons: list[str]
    model: str
    state_version: int
    ts: int
    scored_at: int
    backend: str = ""
    fallback: bool = False
