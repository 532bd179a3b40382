"""Decoding recommendation clicks: a corpus of malformed records (at least one per reason code a click can get),
all derived from a valid record; generated clicks all decode; unknown fields are ignored; decoding never raises.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.synthetic import ACTIONS, generate_clicks
from operators.dead_letter import Reason
from operators.decoding import MAX_TS_MS, MIN_TS_MS, Rejection
from operators.reco.decoding import click_decoder
from operators.reco.schemas import Click, RecoResult

DECODER = click_decoder()
ID_FIELDS = ("event_id", "user_id", "session_id")
VALID: dict[str, Any] = {
    "event_id": "c-0001",
    "user_id": "u-000042",
    "session_id": "s-0000007",
    "item_id": 1234,
    "action": "click",
    "ts": int(datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp() * 1000),
}
VALID_BYTES = json.dumps(VALID).encode()


def _with(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != field}).encode()


def _raw_value(field: str, literal: bytes) -> bytes:
    return json.dumps({**VALID, field: "__PLACEHOLDER__"}).encode().replace(b'"__PLACEHOLDER__"', literal)


@dataclass(frozen=True)
class Case:
    """A malformed record, the reason it must get and the field its error must name (None: record-level)."""

    name: str
    raw: bytes
    reason: Reason
    field: str | None = None


def _corpus() -> list[Case]:
    cases = [
        Case("invalid byte in id", VALID_BYTES.replace(b"u-000042", b"u-\xff00042"), Reason.NOT_UTF8),
        Case("truncated", VALID_BYTES[:-3], Reason.INVALID_JSON),
        Case("not json", b"item=3;action=view", Reason.INVALID_JSON),
        Case("deeply nested extra field", _raw_value("extra", b"[" * 20_000 + b"]" * 20_000), Reason.INVALID_JSON),
        Case("array", b"[1, 2, 3]", Reason.NOT_AN_OBJECT),
        Case("string", b'"click"', Reason.NOT_AN_OBJECT),
        Case("oversized", _with(pad="x" * (64 * 1024)), Reason.OVERSIZED_MESSAGE),
        Case("item_id as string", _with(item_id="1234"), Reason.WRONG_TYPE, "item_id"),
        Case("item_id as float", _with(item_id=12.5), Reason.WRONG_TYPE, "item_id"),
        Case("item_id as bool", _with(item_id=True), Reason.WRONG_TYPE, "item_id"),
        Case("action as int", _with(action=1), Reason.WRONG_TYPE, "action"),
        Case("ts as string", _with(ts="2026-03-01"), Reason.WRONG_TYPE, "ts"),
        Case("ts as float", _with(ts=1.7e12), Reason.WRONG_TYPE, "ts"),
        Case("session_id null", _with(session_id=None), Reason.WRONG_TYPE, "session_id"),
        Case("item_id NaN literal", _raw_value("item_id", b"NaN"), Reason.INVALID_JSON),
        Case("ts overflow literal", _raw_value("ts", b"1e999"), Reason.NON_FINITE_NUMBER, "ts"),
        Case("negative item_id", _with(item_id=-1), Reason.INVALID_VALUE, "item_id"),
        Case("item_id beyond int64", _with(item_id=2**63), Reason.INVALID_VALUE, "item_id"),
        Case("unknown action", _with(action="buy"), Reason.INVALID_VALUE, "action"),
        Case("action in upper case", _with(action="VIEW"), Reason.INVALID_VALUE, "action"),
        Case("ts in seconds", _with(ts=VALID["ts"] // 1000), Reason.ABSURD_TS),
        Case("ts in microseconds", _with(ts=VALID["ts"] * 1000), Reason.ABSURD_TS),
        Case("ts negative", _with(ts=-1), Reason.ABSURD_TS),
        Case("ts at 2100", _with(ts=MAX_TS_MS), Reason.ABSURD_TS),
        Case("ts just before 2000", _with(ts=MIN_TS_MS - 1), Reason.ABSURD_TS),
    ]
    for field in ID_FIELDS:
        cases.append(Case(f"empty {field}", _with(**{field: ""}), Reason.BAD_ID, field))
        cases.append(Case(f"long {field}", _with(**{field: "x" * 129}), Reason.BAD_ID, field))
    for field in VALID:
        cases.append(Case(f"missing {field}", _without(field), Reason.MISSING_FIELD, field))
    return cases


CORPUS = _corpus()


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_malformed_click_gets_its_reason(case: Case) -> None:
    result = DECODER.decode(case.raw)
    assert isinstance(result, Rejection), result
    assert result.reason == case.reason, result.error
    if case.field is not None:
        assert re.search(rf"(`|`\$\.){case.field}`", result.error), result.error


def test_corpus_covers_every_reason_a_click_can_get() -> None:
    expected = set(Reason) - {
        Reason.NON_POSITIVE_AMOUNT,  # transactions only
        Reason.BAD_CURRENCY,
        Reason.BAD_COUNTRY,
        Reason.OPERATOR_ERROR,  # set by the runtime, not by the decoder
        Reason.MODEL_ERROR,
        Reason.MODEL_UNAVAILABLE,  # set by a remote backend that failed
    }
    assert {c.reason for c in CORPUS} == expected


def test_valid_click_decodes_and_extra_fields_are_ignored() -> None:
    assert DECODER.decode(VALID_BYTES) == Click(**VALID)
    assert DECODER.decode(_with(referrer="mail", price=9.99, nested={"a": [1]})) == Click(**VALID)


@pytest.mark.parametrize("value", [0, 5000, 10**9, 2**63 - 1])
def test_any_non_negative_int64_item_id_is_accepted(value: int) -> None:
    """Ids beyond the model's catalogue are valid clicks (out of vocabulary for the model, not bad records)."""
    event = DECODER.decode(_with(item_id=value))
    assert isinstance(event, Click) and event.item_id == value


@pytest.mark.parametrize("action", ACTIONS)
def test_every_generated_action_is_accepted(action: str) -> None:
    assert isinstance(DECODER.decode(_with(action=action)), Click)


def test_every_generated_click_decodes_to_itself() -> None:
    for record in generate_clicks(500, seed=21):
        event = DECODER.decode(json.dumps(record).encode())
        assert isinstance(event, Click)
        assert msgspec.structs.asdict(event) == record


def test_smaller_message_limit_is_honoured() -> None:
    result = click_decoder(max_message_bytes=64).decode(VALID_BYTES)
    assert isinstance(result, Rejection) and result.reason == Reason.OVERSIZED_MESSAGE


def test_result_field_order_is_the_wire_contract() -> None:
    assert RecoResult.__struct_fields__ == (
        "event_id", "user_id", "session_id", "items", "scores", "model", "state_version", "ts", "scored_at",
        "backend", "fallback",  # remote models only: omitted at their defaults (in-process results unchanged)
    )
    assert Click.__struct_fields__ == ("event_id", "user_id", "session_id", "item_id", "action", "ts")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.dictionaries(
            st.sampled_from([*VALID, "extra"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=140)),
        ).map(lambda d: json.dumps({**VALID, **d}).encode()),
    )
)
def test_decoding_never_raises_and_accepts_only_valid_clicks(raw: bytes) -> None:
    result = DECODER.decode(raw)
    if isinstance(result, Click):
        assert 1 <= len(result.event_id) <= 128 and 1 <= len(result.session_id) <= 128
        assert 1 <= len(result.user_id) <= 128
        assert 0 <= result.item_id < 2**63 and result.action in ACTIONS
        assert MIN_TS_MS <= result.ts < MAX_TS_MS
    else:
        assert isinstance(result, Rejection) and result.reason in set(Reason)
