"""The dead-letter record and the stable reason codes every pipeline uses."""

from __future__ import annotations

import re
import time
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
    #: A remote model backend could not score the event in time and its route is configured to dead-letter.
    MODEL_UNAVAILABLE = "model_unavailable"


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


def dead_letter(
    pipeline: str, reason: str, error: str, raw: bytes, *, topic: str | None, partition: int | None,
    offset: int | None, at: int | None = None,
) -> DeadLetter:
    """The dead letter of the record `raw` (read at topic/partition/offset): the one place one is built.

    `at` is when it was dead-lettered (epoch ms), now by default; the offline scorer and the harness pass 0, so
    their outputs are reproducible byte for byte."""
    return DeadLetter(pipeline=pipeline, reason=reason, error=error, raw=raw_as_text(raw), topic=topic,
                      partition=partition, offset=offset, at=int(time.time() * 1000) if at is None else at)


def dead_letter_json(
    pipeline: str, reason: str, error: str, raw: bytes, *, topic: str | None, partition: int | None,
    offset: int | None, at: int | None = None,
) -> bytes:
    """`dead_letter`, encoded as the JSON document the dead-letter topics carry."""
    return msgspec.json.encode(dead_letter(pipeline, reason, error, raw, topic=topic, partition=partition,
                                           offset=offset, at=at))


def raw_as_text(raw: bytes) -> str:
    """The original bytes as text, lossless together with the reason code.

    UTF-8 values are returned verbatim. For values that are not UTF-8 (reason `not_utf8`), backslashes are
    doubled and each invalid byte becomes `\\xNN`, so `raw_from_text(text, not_utf8=True)` restores the bytes.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.replace(b"\\", b"\\\\").decode("utf-8", errors="backslashreplace")


_ESCAPE = re.compile(rb"\\(\\|x[0-9a-f]{2})")


def raw_from_text(text: str, *, not_utf8: bool) -> bytes:
    """The original bytes of a dead letter's `raw` (the inverse of `raw_as_text`)."""
    data = text.encode("utf-8")
    if not not_utf8:
        return data
    return _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]), data)
