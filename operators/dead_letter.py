"""The dead-letter record and the stable reason codes every pipeline uses."""

from __future__ import annotations

from enum import StrEnum

import msgspec


class Reason(StrEnum):
    """Stable dead-letter reason codes (part of the public contract: never rename one)."""

    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    OVERSIZED_MESSAGE = "oversized_message"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE_NUMBER = "non_finite_number"
    NON_POSITIVE_AMOUNT = "non_positive_amount"
    BAD_CURRENCY = "bad_currency"
    BAD_COUNTRY = "bad_country"
    BAD_ID = "bad_id"
    ABSURD_TS = "absurd_ts"
    INVALID_VALUE = "invalid_value"
    OPERATOR_ERROR = "operator_error"
    MODEL_ERROR = "model_error"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A record that could not be scored, with where it came from and why.

    `raw` is the original value as text (undecodable bytes are escaped with backslashes so nothing is lost).
    """

    pipeline: str
    reason: str
    error: str
    raw: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    at: int = 0


def raw_as_text(raw: bytes) -> str:
    """The original bytes as text, lossless: invalid UTF-8 sequences become backslash escapes."""
    return raw.decode("utf-8", errors="backslashreplace")
