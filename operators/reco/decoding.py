"""The validating decoder of recommendation clicks."""

from __future__ import annotations

from operators.dead_letter import Reason
from operators.decoding import MAX_TS_MS, MIN_TS_MS, EventDecoder, Rejection, plausible_ts
from operators.reco.schemas import Click


def _ts(click: Click) -> Rejection | None:
    if MIN_TS_MS <= click.ts < MAX_TS_MS:
        return None
    return plausible_ts(click.ts)


def click_decoder(max_message_bytes: int = 64 * 1024) -> EventDecoder[Click]:
    """A decoder that turns raw JSON bytes into a valid `Click` or a `Rejection`.

    Reason codes: `bad_id` for an empty or over-long `event_id`/`user_id`/`session_id`; `invalid_value` for a
    negative (or beyond int64) `item_id` or an unknown `action`; `absurd_ts` for a `ts` outside 2000..2100;
    plus the generic codes of `EventDecoder` (`wrong_type`, `missing_field`, `invalid_json`, …).
    """
    reasons = {field: Reason.BAD_ID for field in ("event_id", "user_id", "session_id")}
    reasons |= {"item_id": Reason.INVALID_VALUE, "action": Reason.INVALID_VALUE}
    return EventDecoder(Click, constraint_reasons=reasons, checks=(_ts,), max_message_bytes=max_message_bytes)
