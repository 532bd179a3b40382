"""`operators.dead_letter.dead_letter` is the one constructor of dead letters: every runtime's letter is its."""

from __future__ import annotations

import time

import msgspec

from operators.dead_letter import DeadLetter, Reason, dead_letter, dead_letter_json, raw_from_text


def test_a_dead_letter_keeps_where_the_record_came_from_and_its_bytes() -> None:
    raw = b'{"amount": \xff}'
    letter = dead_letter("risk", Reason.NOT_UTF8, "not UTF-8 at byte 11", raw, topic="risk.transactions",
                         partition=2, offset=41, at=0)
    assert letter == DeadLetter(pipeline="risk", reason="not_utf8", error="not UTF-8 at byte 11",
                                raw='{"amount": \\xff}', topic="risk.transactions", partition=2, offset=41, at=0)
    assert raw_from_text(letter.raw, not_utf8=True) == raw


def test_at_defaults_to_now_and_a_given_at_is_kept() -> None:
    before = int(time.time() * 1000)
    letter = dead_letter("risk", Reason.INVALID_JSON, "e", b"x", topic=None, partition=None, offset=None)
    assert before <= letter.at <= int(time.time() * 1000)
    assert dead_letter("risk", Reason.INVALID_JSON, "e", b"x", topic=None, partition=None, offset=None, at=0).at == 0


def test_the_json_form_decodes_to_the_same_letter() -> None:
    encoded = dead_letter_json("reco", Reason.MISSING_FIELD, "missing session_id", b"{}", topic="t", partition=0,
                               offset=7, at=5)
    assert msgspec.json.decode(encoded, type=DeadLetter) == dead_letter(
        "reco", Reason.MISSING_FIELD, "missing session_id", b"{}", topic="t", partition=0, offset=7, at=5)
