"""Feedback labels: the outcome of a scored event, reported after it (a chargeback days after a transaction,
a purchase after a click), as JSON on a feedback topic (`{PIPELINE}.feedback` by default).

Label contract (JSON; unknown extra fields are ignored):

| field | type | rule |
|---|---|---|
| `event_id` | str | 1-128 chars: the scored event's id (its result's `event_id`) |
| `label` | int | 0 (legitimate / not bought) or 1 (fraud / bought) |
| `labelled_at` | int | epoch ms when the outcome became known, 2000-2100 |
| `source` | str | optional, up to 64 chars: what reported it (`chargeback`, `matured`, `purchase` ...) |

A label that fails these rules is dead-lettered with the same reason codes as events (`bad_id`,
`invalid_value` for a label other than 0/1, `absurd_ts`, `missing_field` ...).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from operators.dead_letter import Reason
from operators.decoding import EventDecoder, Rejection, plausible_ts

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Label(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one scored event, known at `labelled_at`."""

    event_id: Id
    label: Annotated[int, msgspec.Meta(ge=0, le=1)]
    labelled_at: int
    source: Annotated[str, msgspec.Meta(max_length=64)] = ""


def _labelled_at(label: Label) -> Rejection | None:
    rejection = plausible_ts(label.labelled_at)
    if rejection is None:
        return None
    return Rejection(rejection.reason, rejection.error.replace("`ts`", "`labelled_at`"))


def label_decoder(max_message_bytes: int = 64 * 1024) -> EventDecoder[Label]:
    """A decoder that turns raw JSON bytes into a valid `Label` or a `Rejection`."""
    return EventDecoder(Label, constraint_reasons={"event_id": Reason.BAD_ID}, checks=(_labelled_at,),
                        max_message_bytes=max_message_bytes)
