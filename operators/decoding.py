"""Validated decoding of raw Kafka values into typed events, with a stable reason code for every rejection.

A decoder may take a *lenient* first pass (`Lenient`): decode into a struct without the constraints that are slow
to check in msgspec (regular expressions: each is a call into Python's `re`), check them in Python and build the
event; anything the lenient pass does not accept is decoded again by the strict decoder, which alone decides
rejections and their messages. So the result is the strict decoder's, event or rejection, for every input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from operators.dead_letter import Reason

E = TypeVar("E", bound=msgspec.Struct)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
# Event times outside [2000-01-01, 2100-01-01) are treated as absurd (seconds or microseconds sent as ms).
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

_PATH = re.compile(r" - at `\$\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)")
_WRONG_TYPE = re.compile(r"^Expected `[^`]+`, got `[^`]+`")


class Rejection(msgspec.Struct, frozen=True):
    """Why a raw value is not a valid event: a stable reason code and a human-readable message."""

    reason: Reason
    error: str


class Lenient(Generic[E]):
    """A cheaper first pass of an `EventDecoder`: `lax_type` is the event type without some constraints, and
    `accept(lax)` returns the event when `lax` meets exactly those constraints (else None: the strict decoder
    decides). `accept` must never return an event the strict decoder would reject or decode differently."""

    __slots__ = ("accept", "lax_type")

    def __init__(self, lax_type: type[msgspec.Struct], accept: Callable[[Any], E | None]) -> None:
        self.lax_type = lax_type
        self.accept = accept


class EventDecoder(Generic[E]):
    """Decodes JSON bytes into the event type `event_type`, or explains with a `Rejection` why it cannot.

    `constraint_reasons` maps a field name to the reason code used when that field violates a declared
    constraint (pattern, length, range); `checks` run on decoded events and return a Rejection or None;
    `lenient`: a cheaper first pass (see the module docstring), same results.
    """

    def __init__(
        self,
        event_type: type[E],
        *,
        constraint_reasons: Mapping[str, Reason] | None = None,
        checks: tuple[Callable[[E], Rejection | None], ...] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        lenient: Lenient[E] | None = None,
    ) -> None:
        self._decoder = msgspec.json.Decoder(event_type)
        self._lax_decoder = msgspec.json.Decoder(lenient.lax_type) if lenient is not None else None
        self._accept = lenient.accept if lenient is not None else None
        self._constraint_reasons = dict(constraint_reasons or {})
        self._checks = checks
        self._max_message_bytes = max_message_bytes
        self.event_type = event_type

    def decode(self, raw: bytes) -> E | Rejection:
        """The typed event for `raw`, or a Rejection; never raises for bad input."""
        if len(raw) > self._max_message_bytes:
            return Rejection(
                Reason.OVERSIZED_MESSAGE,
                f"message is {len(raw)} bytes; the limit is {self._max_message_bytes}",
            )
        if not raw.isascii():  # ASCII is valid UTF-8 (and checking it needs no decoded copy)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return Rejection(Reason.NOT_UTF8, f"value is not UTF-8 text: {exc}")
        event: E | None = None
        if self._lax_decoder is not None:
            try:
                lax = self._lax_decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                pass  # the strict decoder below says why
            else:
                event = self._accept(lax)  # type: ignore[misc]  # set together with the lax decoder
        if event is None:
            try:
                event = self._decoder.decode(raw)
            except msgspec.ValidationError as exc:
                return self._classify(str(exc))
            except msgspec.DecodeError as exc:
                return Rejection(Reason.INVALID_JSON, f"value is not valid JSON: {exc}")
            except RecursionError:
                return Rejection(Reason.INVALID_JSON, "value is nested too deeply to decode")
        for check in self._checks:
            rejection = check(event)
            if rejection is not None:
                return rejection
        return event

    def _classify(self, message: str) -> Rejection:
        name = self.event_type.__name__
        if message.startswith("Object missing required field"):
            return Rejection(Reason.MISSING_FIELD, f"{name}: {message}")
        match = _PATH.search(message)
        if match is None:
            return Rejection(Reason.NOT_AN_OBJECT, f"{name} must be a JSON object: {message}")
        if message.startswith("Number out of range"):
            return Rejection(Reason.NON_FINITE_NUMBER, f"{name}: {message} (must be a finite number)")
        if _WRONG_TYPE.match(message):
            return Rejection(Reason.WRONG_TYPE, f"{name}: {message}")
        reason = self._constraint_reasons.get(match.group("field"), Reason.INVALID_VALUE)
        return Rejection(reason, f"{name}: {message}")


def finite(field: str, value: float) -> Rejection | None:
    """A rejection when `value` (of `field`) is NaN or infinite."""
    if math.isfinite(value):
        return None
    return Rejection(Reason.NON_FINITE_NUMBER, f"`{field}` must be a finite number, got {value!r}")


def plausible_ts(ts: int) -> Rejection | None:
    """A rejection when an epoch-millisecond event time is outside 2000..2100 (wrong unit or garbage)."""
    if MIN_TS_MS <= ts < MAX_TS_MS:
        return None
    return Rejection(
        Reason.ABSURD_TS,
        f"`ts` must be epoch milliseconds between 2000-01-01 and 2100-01-01, got {ts}",
    )
