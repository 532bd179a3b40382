"""Event and result schemas of the recommendation pipeline (the public wire contract, JSON)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# Item ids are non-negative and must fit the model's int64 input; ids beyond the catalogue are out of vocabulary.
ItemId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Action = Literal["view", "click", "cart", "purchase"]


class Click(msgspec.Struct, frozen=True, kw_only=True):
    """One interaction of a shopping session with an item. Unknown extra fields are ignored; `ts` is the event
    time in epoch milliseconds. The session is the state key."""

    event_id: Id
    user_id: Id
    session_id: Id
    item_id: ItemId
    action: Action
    ts: int


class RecoResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The next-item recommendations after one click.

    `items` are ranked best first and never contain an item of the session so far (the click's own item
    included); `scores[i]` is the model's score of `items[i]` rounded to 6 decimals, or exactly 0.0 for an item
    filled in from the model's popularity list (cold start, see `operators.reco.operator`). `model` is
    "reco@<version>"; `state_version` is the version of the session's state written for this click; `ts` is the
    click's event time and `scored_at` the wall-clock time of scoring (epoch ms). `backend` names the model server
    that stepped the session (absent: in-process); `fallback` (absent: false) says that server failed for the
    click's batch and the route's model stepped it in-process. Both are left out of the JSON at their defaults.
    """

    event_id: str
    user_id: str
    session_id: str
    items: list[int]
    scores: list[float]
    model: str
    state_version: int
    ts: int
    scored_at: int
    backend: str = ""
    fallback: bool = False
