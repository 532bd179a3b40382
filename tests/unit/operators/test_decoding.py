"""Decoding risk transactions: a corpus of malformed records (one family per reason code), all derived
from a valid record, plus properties (never raises, accepted records are valid, `raw_as_text` is lossless).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.synthetic import generate_transactions
from operators.dead_letter import DeadLetter, Reason, raw_as_text, raw_from_text
from operators.decoding import DEFAULT_MAX_MESSAGE_BYTES, MAX_TS_MS, MIN_TS_MS, EventDecoder, Rejection
from operators.risk.decoding import transaction_decoder
from operators.risk.schemas import Transaction

DECODER = transaction_decoder()
FIELDS: tuple[str, ...] = Transaction.__struct_fields__
ID_FIELDS = ("event_id", "account_id", "merchant_id", "device_id")
VALID: dict[str, Any] = {
    "event_id": "tx-0001",
    "account_id": "acct-000042",
    "amount": 42.5,
    "currency": "EUR",
    "merchant_id": "mch-00227",
    "country": "DE",
    "device_id": "dev-b8f193d22dd1",
    "ts": int(datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp() * 1000),
}
VALID_BYTES = json.dumps(VALID).encode()


def _epoch_ms(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


def _with(**changes: Any) -> bytes:
    """The valid record with some fields replaced."""
    return json.dumps({**VALID, **changes}).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != field}).encode()


def _raw_value(field: str, literal: bytes) -> bytes:
    """The valid record with `field`'s value replaced by a raw JSON literal (e.g. `1e999`, `NaN`)."""
    return json.dumps({**VALID, field: "__PLACEHOLDER__"}).encode().replace(b'"__PLACEHOLDER__"', literal)


def _names_field(error: str, field: str) -> bool:
    """True if `error` names `field` the way our messages do: `` `field` `` or `` `$.field` ``."""
    return re.search(rf"(`|`\$\.){re.escape(field)}`", error) is not None


@dataclass(frozen=True)
class Case:
    """A malformed record, the reason code it must get and what its error text must name."""

    name: str
    raw: bytes
    reason: Reason
    field: str | None = None  # the field the error must name (None: record-level reason)
    mentions: str | None = None  # for record-level reasons: a word the error must contain


def _corpus() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    # -- not_utf8: valid JSON structure, bytes that are not UTF-8 inside a string value
    add(Case("invalid byte in id", VALID_BYTES.replace(b"mch-00227", b"mch-\xff0227"), Reason.NOT_UTF8,
             mentions="UTF-8"))
    add(Case("latin-1 text", _with(merchant_id="Caf\u00e9").replace(b"\\u00e9", b"\xe9"), Reason.NOT_UTF8,
             mentions="UTF-8"))
    add(Case("truncated multibyte", VALID_BYTES[:-1] + b"\xc3}", Reason.NOT_UTF8, mentions="UTF-8"))
    add(Case("overlong encoding", VALID_BYTES.replace(b"tx-0001", b"tx-\xc0\xaf"), Reason.NOT_UTF8,
             mentions="UTF-8"))
    add(Case("encoded surrogate", VALID_BYTES.replace(b"tx-0001", b"tx-\xed\xa0\x80"), Reason.NOT_UTF8,
             mentions="UTF-8"))
    # -- invalid_json
    add(Case("truncated", VALID_BYTES[: len(VALID_BYTES) // 2], Reason.INVALID_JSON, mentions="JSON"))
    add(Case("empty value", b"", Reason.INVALID_JSON, mentions="JSON"))
    add(Case("trailing comma", VALID_BYTES[:-1] + b",}", Reason.INVALID_JSON, mentions="JSON"))
    add(Case("trailing garbage", VALID_BYTES + b" x", Reason.INVALID_JSON, mentions="JSON"))
    add(Case("single quotes", VALID_BYTES.replace(b'"', b"'"), Reason.INVALID_JSON, mentions="JSON"))
    add(Case("NaN literal", _raw_value("amount", b"NaN"), Reason.INVALID_JSON, mentions="JSON"))
    add(Case("Infinity literal", _raw_value("amount", b"Infinity"), Reason.INVALID_JSON, mentions="JSON"))
    # -- not_an_object
    add(Case("wrapped in a list", b"[" + VALID_BYTES + b"]", Reason.NOT_AN_OBJECT, mentions="object"))
    add(Case("double-encoded", json.dumps(VALID_BYTES.decode()).encode(), Reason.NOT_AN_OBJECT,
             mentions="object"))
    add(Case("null", b"null", Reason.NOT_AN_OBJECT, mentions="object"))
    add(Case("number", b"42.5", Reason.NOT_AN_OBJECT, mentions="object"))
    # -- oversized_message: the valid record padded past the limit with an unknown field
    pad = DEFAULT_MAX_MESSAGE_BYTES - len(VALID_BYTES) + 1
    oversized = json.dumps({**VALID, "padding": "p" * pad}).encode()
    add(Case("padded past the limit", oversized, Reason.OVERSIZED_MESSAGE,
             mentions=str(DEFAULT_MAX_MESSAGE_BYTES)))
    # -- missing_field, for every field
    for field in FIELDS:
        add(Case(f"missing {field}", _without(field), Reason.MISSING_FIELD, field))
    # -- wrong_type
    wrong: list[tuple[str, Any]] = [
        ("amount", "42.5"), ("amount", True), ("amount", None), ("amount", [42.5]),
        ("ts", str(VALID["ts"])), ("ts", VALID["ts"] + 0.5), ("ts", None), ("ts", False),
        ("currency", None), ("currency", 978), ("country", ["DE"]), ("country", {"code": "DE"}),
    ]
    wrong += [(field, 12345) for field in ID_FIELDS]
    for field, value in wrong:
        add(Case(f"{field}={value!r}", _with(**{field: value}), Reason.WRONG_TYPE, field))
    # -- non_finite_number
    for literal in (b"1e999", b"-1e999", b"1" + b"0" * 400, b"1.5e309"):
        add(Case(f"amount={literal[:12]!r}", _raw_value("amount", literal), Reason.NON_FINITE_NUMBER, "amount"))
    # -- non_positive_amount
    for amount in (0, 0.0, -0.0, -1, -42.5, -5e-324):
        add(Case(f"amount={amount!r}", _with(amount=amount), Reason.NON_POSITIVE_AMOUNT, "amount"))
    # -- bad_currency / bad_country
    for currency in ("eur", "EU", "EURO", "E1R", "", " EUR", "EUR ", "\nEUR", "\u20acUR"):
        add(Case(f"currency={currency!r}", _with(currency=currency), Reason.BAD_CURRENCY, "currency"))
    for country in ("de", "D", "DEU", "D3", "", "DE ", "\nDE", "\u00d0E"):
        add(Case(f"country={country!r}", _with(country=country), Reason.BAD_COUNTRY, "country"))
    # -- bad_id: empty and longer than 128 characters, for every id field
    for field in ID_FIELDS:
        add(Case(f"{field} empty", _with(**{field: ""}), Reason.BAD_ID, field))
        add(Case(f"{field} 129 chars", _with(**{field: "x" * 129}), Reason.BAD_ID, field))
        add(Case(f"{field} 1000 chars", _with(**{field: "\u00e9" * 1000}), Reason.BAD_ID, field))
    # -- absurd_ts: wrong units, far future/past, just outside the window
    ts = VALID["ts"]
    absurd = {
        "seconds": ts // 1000,
        "microseconds": ts * 1000,
        "nanoseconds": ts * 1_000_000,
        "year 2200": _epoch_ms(2200),
        "year 1999": _epoch_ms(1999),
        "zero": 0,
        "negative": -ts,
        "2100-01-01 exactly": _epoch_ms(2100),
        "one ms before 2000": _epoch_ms(2000) - 1,
        "beyond int64": 2**64 + 7,
    }
    for label, value in absurd.items():
        add(Case(f"ts {label}", _with(ts=value), Reason.ABSURD_TS, "ts"))
    return cases


CORPUS = _corpus()


def test_the_base_record_and_the_synthetic_stream_decode() -> None:
    """The corpus is derived from a valid record; generated events (with extra label/pattern keys) decode."""
    assert DECODER.decode(VALID_BYTES) == Transaction(**VALID)
    for record in generate_transactions(300, seed=3):
        decoded = DECODER.decode(json.dumps(record).encode())
        assert isinstance(decoded, Transaction), decoded
        assert msgspec.structs.asdict(decoded) == {f: record[f] for f in FIELDS}


def test_the_corpus_covers_every_record_level_reason_code() -> None:
    operator_side = {Reason.INVALID_VALUE, Reason.OPERATOR_ERROR, Reason.MODEL_ERROR, Reason.MODEL_UNAVAILABLE}
    assert {case.reason for case in CORPUS} == set(Reason) - operator_side
    assert {case.field for case in CORPUS if case.reason is Reason.MISSING_FIELD} == set(FIELDS)
    bad_ids = {case.field for case in CORPUS if case.reason is Reason.BAD_ID}
    assert bad_ids == set(ID_FIELDS)


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_record_gets_its_reason_and_a_message_naming_the_field(case: Case) -> None:
    assert case.raw != VALID_BYTES
    result = DECODER.decode(case.raw)
    assert isinstance(result, Rejection), f"{case.name}: decoded to {result!r}"
    assert result.reason is case.reason, f"{case.name}: {result}"
    if case.field is not None:
        assert _names_field(result.error, case.field), f"{case.name}: {result.error!r}"
        others = [f for f in FIELDS if f != case.field and _names_field(result.error, f)]
        assert not others, f"{case.name}: error names {others} too: {result.error!r}"
    else:
        assert case.mentions is not None and case.mentions in result.error, result.error


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("currency", "EUR\n", Reason.BAD_CURRENCY), ("country", "DE\n", Reason.BAD_COUNTRY)],
)
def test_trailing_newline_in_code_is_rejected(field: str, value: str, reason: Reason) -> None:
    result = DECODER.decode(_with(**{field: value}))
    assert isinstance(result, Rejection), f"{field}={value!r} decoded to {result!r}"
    assert result.reason is reason and _names_field(result.error, field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[(f, "x") for f in ID_FIELDS],
        *[(f, "x" * 128) for f in ID_FIELDS],
        *[(f, "\u00e9" * 128) for f in ID_FIELDS],  # the limit counts characters, not bytes
        ("amount", 5e-324),
        ("amount", 1.7976931348623157e308),
        ("amount", 7),
        ("ts", MIN_TS_MS),
        ("ts", MAX_TS_MS - 1),
        ("currency", "JPY"),
        ("country", "JP"),
    ],
)
def test_boundary_values_just_inside_the_rules_decode(field: str, value: Any) -> None:
    result = DECODER.decode(_with(**{field: value}))
    assert isinstance(result, Transaction), result
    assert getattr(result, field) == value


def test_size_limit_is_inclusive_and_configurable() -> None:
    at_limit = json.dumps({**VALID, "padding": "p" * (DEFAULT_MAX_MESSAGE_BYTES - len(VALID_BYTES) - 15)})
    raw = at_limit.encode()
    raw = raw[:-1] + b" " * (DEFAULT_MAX_MESSAGE_BYTES - len(raw)) + b"}"
    assert len(raw) == DEFAULT_MAX_MESSAGE_BYTES
    assert isinstance(DECODER.decode(raw), Transaction)
    small = transaction_decoder(max_message_bytes=len(VALID_BYTES) - 1)
    rejection = small.decode(VALID_BYTES)
    assert isinstance(rejection, Rejection) and rejection.reason is Reason.OVERSIZED_MESSAGE
    assert str(len(VALID_BYTES)) in rejection.error and str(len(VALID_BYTES) - 1) in rejection.error
    assert isinstance(transaction_decoder(max_message_bytes=len(VALID_BYTES)).decode(VALID_BYTES), Transaction)


EXTRA_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(extras=st.dictionaries(st.text(max_size=12).filter(lambda k: k not in FIELDS), EXTRA_VALUES, max_size=5))
def test_unknown_extra_fields_are_ignored(extras: dict[str, Any]) -> None:
    raw = json.dumps({**VALID, **extras}).encode()
    assert DECODER.decode(raw) == Transaction(**VALID)


def test_unknown_fields_with_extreme_values_are_ignored() -> None:
    for literal in (b"1e999", b"-1" + b"0" * 500, b'"\\u00e9\\ud83d\\ude00"', b'{"a": [1, {"b": null}]}'):
        raw = VALID_BYTES[:-1] + b', "zz_extra": ' + literal + b"}"
        assert DECODER.decode(raw) == Transaction(**VALID), literal


def _check_outcome(result: object) -> None:
    """Whatever the input: a Rejection with a known reason and a message, or a Transaction that is valid."""
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason) and result.error
        return
    assert isinstance(result, Transaction), result
    assert math.isfinite(result.amount) and result.amount > 0
    assert MIN_TS_MS <= result.ts < MAX_TS_MS
    for field in ID_FIELDS:
        assert 1 <= len(getattr(result, field)) <= 128
    # `re.fullmatch` without `\Z` caveats: a trailing newline never passes (test_trailing_newline_in_code_is_rejected)
    assert re.fullmatch("[A-Z]{3}", result.currency) and re.fullmatch("[A-Z]{2}", result.country)


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=512))
def test_never_raises_on_random_bytes(raw: bytes) -> None:
    _check_outcome(DECODER.decode(raw))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=140),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6),
                                                                 inner, max_size=3),
    max_leaves=8,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    field: st.one_of(st.just(VALID[field]), JSON_VALUES) for field in FIELDS
}
FIELD_VALUES["ts"] = st.one_of(st.integers(), st.just(VALID["ts"]), JSON_VALUES)
FIELD_VALUES["amount"] = st.one_of(st.floats(), st.integers(), JSON_VALUES)
FIELD_VALUES["currency"] = st.one_of(st.from_regex("[A-Za-z]{2,4}", fullmatch=True), JSON_VALUES)
FIELD_VALUES["country"] = st.one_of(st.from_regex("[A-Za-z]{1,3}", fullmatch=True), JSON_VALUES)


@st.composite
def json_ish_records(draw: st.DrawFn) -> bytes:
    """Records that are almost transactions: some fields dropped or replaced, JSON-ish text that may be cut."""
    record = {f: draw(FIELD_VALUES[f]) for f in FIELDS if draw(st.integers(0, 9)) > 0}
    text = json.dumps(record, allow_nan=True) if draw(st.booleans()) else json.dumps(draw(JSON_VALUES))
    cut = draw(st.integers(0, len(text)))
    if draw(st.integers(0, 3)) == 0:
        text = text[:cut]
    return text.encode("utf-8", errors="surrogatepass")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=json_ish_records())
def test_never_raises_on_json_ish_text(raw: bytes) -> None:
    _check_outcome(DECODER.decode(raw))


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, len(VALID_BYTES) - 1), byte=st.integers(0, 255), delete=st.booleans())
def test_single_byte_mutations_of_a_valid_record(position: int, byte: int, delete: bool) -> None:
    raw = bytearray(VALID_BYTES)
    if delete:
        del raw[position]
    else:
        raw[position] = byte
    _check_outcome(DECODER.decode(bytes(raw)))


STRICT = EventDecoder(
    Transaction, constraint_reasons=DECODER._constraint_reasons, checks=DECODER._checks
)  # the same decoder without its lenient first pass
PATTERN_TEXT = st.text(alphabet=st.sampled_from("AZaz\u00c9\u0130\u212a\u00b5 1_\u00df"), max_size=4)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=json_ish_records()
    | st.builds(lambda c, k: _with(currency=c, country=k), PATTERN_TEXT | st.just("EUR"), PATTERN_TEXT | st.just("DE"))
)
def test_lenient_first_pass_gives_the_strict_decoders_outcome(raw: bytes) -> None:
    """Event or rejection (reason and message), exactly what the strict decoder alone gives, for any input:
    currency/country texts around the patterns (lower case, non-ASCII letters whose upper case is ASCII-like,
    digits, wrong lengths) and the JSON-ish records above."""
    assert msgspec.json.encode(DECODER.decode(raw)) == msgspec.json.encode(STRICT.decode(raw))


@pytest.mark.parametrize("depth", [2000])
def test_deeply_nested_value_is_rejected_not_raised(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    raw = VALID_BYTES[:-1] + b', "zz_extra": ' + nested + b"}"
    assert len(raw) < DEFAULT_MAX_MESSAGE_BYTES
    result = DECODER.decode(raw)
    assert isinstance(result, Rejection)


# ------------------------------------------------------------------------------------------ raw_as_text

_ESCAPE = re.compile(rb"\\x([0-9a-f]{2})")


def _unescape(text: str) -> bytes:
    """Inverse of `raw_as_text` for inputs without a literal backslash."""
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_raw_as_text_keeps_utf8_text_unchanged(text: str) -> None:
    raw = text.encode("utf-8", errors="surrogatepass")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:  # lone surrogates: not UTF-8, covered by the escape tests
        return
    assert raw_as_text(raw) == text


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=256).filter(lambda b: b"\\" not in b))
def test_raw_as_text_escapes_invalid_bytes_losslessly(raw: bytes) -> None:
    text = raw_as_text(raw)
    text.encode("utf-8")  # valid text: no surrogates sneak through
    assert _unescape(text) == raw
    letter = DeadLetter(pipeline="risk", reason=Reason.NOT_UTF8, error="e", raw=text)
    assert msgspec.json.decode(msgspec.json.encode(letter), type=DeadLetter).raw == text


def test_raw_as_text_of_a_rejected_record_shows_the_bad_byte() -> None:
    case = next(c for c in CORPUS if c.name == "invalid byte in id")
    text = raw_as_text(case.raw)
    assert text.startswith(VALID_BYTES.decode()[: VALID_BYTES.index(b"mch-")])
    assert "\\xff" in text and _unescape(text) == case.raw


@pytest.mark.parametrize(
    ("first", "second"),
    [(b"\\xff", b"\xff"), (b'{"m": "a\\xc3"}\xc3', b'{"m": "a\xc3"}\xc3')],
)
def test_raw_as_text_round_trips_with_the_reason(first: bytes, second: bytes) -> None:
    for raw in (first, second):
        try:
            raw.decode("utf-8")
            not_utf8 = False
        except UnicodeDecodeError:
            not_utf8 = True
        assert raw_from_text(raw_as_text(raw), not_utf8=not_utf8) == raw


