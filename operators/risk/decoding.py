"""The validating decoder of risk transactions."""

from __future__ import annotations

import math

import msgspec

from operators.dead_letter import Reason
from operators.decoding import MAX_TS_MS, MIN_TS_MS, EventDecoder, Lenient, Rejection, finite, plausible_ts
from operators.risk.schemas import Id, Transaction


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


class _LaxTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """`Transaction` without its two patterns (`currency` `^[A-Z]{3}\\Z`, `country` `^[A-Z]{2}\\Z`)."""

    event_id: Id
    account_id: Id
    amount: float
    currency: str
    merchant_id: Id
    country: str
    device_id: Id
    ts: int


def _upper_ascii_letters(text: str, length: int) -> bool:
    """Whether `text` matches `^[A-Z]{length}\\Z` (ASCII letters that are all upper case: A-Z only)."""
    return len(text) == length and text.isascii() and text.isalpha() and text.isupper()


def _accept(lax: _LaxTransaction) -> Transaction | None:
    """The `Transaction` of `lax` when its currency and country match the schema's patterns, else None."""
    if _upper_ascii_letters(lax.currency, 3) and _upper_ascii_letters(lax.country, 2):
        return Transaction(
            event_id=lax.event_id,
            account_id=lax.account_id,
            amount=lax.amount,
            currency=lax.currency,
            merchant_id=lax.merchant_id,
            country=lax.country,
            device_id=lax.device_id,
            ts=lax.ts,
        )
    return None


def transaction_decoder(max_message_bytes: int = 64 * 1024) -> EventDecoder[Transaction]:
    """A decoder that turns raw JSON bytes into a valid `Transaction` or a `Rejection`.

    Its lenient first pass checks the currency and country patterns in Python (a regular expression per field
    costs more than the rest of the decoding); the strict decoder decides every record that pass does not accept.
    """
    id_fields = ("event_id", "account_id", "merchant_id", "device_id")
    reasons = {field: Reason.BAD_ID for field in id_fields}
    reasons |= {"currency": Reason.BAD_CURRENCY, "country": Reason.BAD_COUNTRY}
    return EventDecoder(
        Transaction,
        constraint_reasons=reasons,
        checks=(_valid,),
        max_message_bytes=max_message_bytes,
        lenient=Lenient(_LaxTransaction, _accept),
    )
