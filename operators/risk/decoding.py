"""The validating decoder of risk transactions."""

from __future__ import annotations

import math

from operators.dead_letter import Reason
from operators.decoding import MAX_TS_MS, MIN_TS_MS, EventDecoder, Rejection, finite, plausible_ts
from operators.risk.schemas import Transaction


def _amount(tx: Transaction) -> Rejection | None:
    rejection = finite("amount", tx.amount)
    if rejection is not None:
        return rejection
    if tx.amount <= 0:
        return Rejection(Reason.NON_POSITIVE_AMOUNT, f"`amount` must be > 0, got {tx.amount!r}")
    return None


def _ts(tx: Transaction) -> Rejection | None:
    return plausible_ts(tx.ts)


def _valid(tx: Transaction) -> Rejection | None:
    """`_amount`, then `_ts` (the first rejection); one comparison chain when the transaction is fine."""
    if 0.0 < tx.amount < math.inf and MIN_TS_MS <= tx.ts < MAX_TS_MS:
        return None
    rejection = _amount(tx)
    return rejection if rejection is not None else _ts(tx)


def transaction_decoder(max_message_bytes: int = 64 * 1024) -> EventDecoder[Transaction]:
    """A decoder that turns raw JSON bytes into a valid `Transaction` or a `Rejection`."""
    id_fields = ("event_id", "account_id", "merchant_id", "device_id")
    reasons = {field: Reason.BAD_ID for field in id_fields}
    reasons |= {"currency": Reason.BAD_CURRENCY, "country": Reason.BAD_COUNTRY}
    return EventDecoder(
        Transaction,
        constraint_reasons=reasons,
        checks=(_valid,),
        max_message_bytes=max_message_bytes,
    )
