"""The feedback label contract: valid labels decode, every bad one is rejected with a reason code; synthetic
labels follow the generator's ground truth and arrive late, in arrival order (chargebacks for risk, confirmed
orders for reco)."""

from __future__ import annotations

import pytest

from models.synthetic import generate_clicks, generate_transactions
from operators.decoding import Rejection
from operators.feedback import Label, label_decoder
from pipelines.loop.feedback import synthetic_labels
from pipelines.reco.feedback import ATTRIBUTION_MS, CANCEL_SHARE, ORDER_DELAY_MS
from pipelines.risk.feedback import CHARGEBACK_DELAY_MS, MATURITY_MS

T = 1_767_225_600_000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id": "e", "label": 2, "labelled_at": 1767225600000}', "invalid_value"),
        (b'{"event_id": "e", "label": -1, "labelled_at": 1767225600000}', "invalid_value"),
        (b'{"event_id": "", "label": 1, "labelled_at": 1767225600000}', "bad_id"),
        (b'{"event_id": "e", "label": 1, "labelled_at": 1767225600}', "absurd_ts"),
        (b'{"event_id": "e", "label": "1", "labelled_at": 1767225600000}', "wrong_type"),
        (b'{"label": 1, "labelled_at": 1767225600000}', "missing_field"),
        (b"[1]", "not_an_object"),
        (b"{nope", "invalid_json"),
        (b"\xff", "not_utf8"),
    ],
)
def test_a_bad_label_is_rejected_with_its_reason(raw: bytes, reason: str) -> None:
    decoded = label_decoder().decode(raw)
    assert isinstance(decoded, Rejection) and decoded.reason == reason


def test_a_label_decodes_and_ignores_unknown_fields() -> None:
    raw = b'{"event_id": "e", "label": 1, "labelled_at": 1767225600000, "source": "chargeback", "amount": 3}'
    assert label_decoder().decode(raw) == Label(event_id="e", label=1, labelled_at=T, source="chargeback")


def test_synthetic_labels_follow_the_ground_truth_and_arrive_late() -> None:
    events = {str(e["event_id"]): e for e in generate_transactions(3_000, 4)}
    labels = synthetic_labels("risk", 3_000, 4)
    assert len(labels) == len(events) and [x["labelled_at"] for x in labels] == sorted(x["labelled_at"] for x in labels)
    for label in labels:
        event = events[str(label["event_id"])]
        delay = int(label["labelled_at"]) - int(event["ts"])
        assert label["label"] == event["label"]
        if label["label"] == 1:
            assert label["source"] == "chargeback" and CHARGEBACK_DELAY_MS[0] <= delay < CHARGEBACK_DELAY_MS[1]
        else:
            assert label["source"] == "matured" and delay == MATURITY_MS
    assert sum(int(x["label"]) for x in labels) > 0


def test_reco_labels_mark_the_clicks_of_items_their_session_bought_once_the_order_is_confirmed() -> None:
    n, seed = 20_000, 3
    events = generate_clicks(n, seed)
    by_id = {str(e["event_id"]): e for e in events}
    labels = synthetic_labels("reco", n, seed)
    assert [x["labelled_at"] for x in labels] == sorted(x["labelled_at"] for x in labels)
    assert sorted(str(x["event_id"]) for x in labels) == sorted(by_id)
    checkouts: dict[tuple[str, int], list[int]] = {}
    session_end: dict[str, int] = {}
    for e in events:
        session = str(e["session_id"])
        session_end[session] = int(e["ts"])  # events are in ts order
        if e["action"] == "purchase":
            checkouts.setdefault((session, int(e["item_id"])), []).append(int(e["ts"]))
    confirmed: set[str] = set()  # checkout event ids that got label 1 (a confirmed order)
    for label in labels:
        e = by_id[str(label["event_id"])]
        session, item, ts = str(e["session_id"]), int(e["item_id"]), int(e["ts"])
        later = [c for c in checkouts.get((session, item), []) if c >= ts]
        if label["label"] == 1:
            delay = int(label["labelled_at"]) - min(later)  # confirmed after a checkout of it at or after the click
            assert label["source"] == "purchase" and later and ORDER_DELAY_MS[0] <= delay <= ORDER_DELAY_MS[1] + (
                max(later) - min(later))
            if e["action"] == "purchase":
                confirmed.add(str(e["event_id"]))
        else:
            assert label["source"] == "no_purchase" and label["labelled_at"] == session_end[session] + ATTRIBUTION_MS
    checkout_events = [e for e in events if e["action"] == "purchase"]
    cancelled = 1 - len(confirmed) / len(checkout_events)  # a cancelled checkout is labelled 0, no click shows it
    assert len(checkout_events) > 100 and abs(cancelled - CANCEL_SHARE) < 0.05
    assert labels == synthetic_labels("reco", n, seed)  # the same seed gives the same feedback
