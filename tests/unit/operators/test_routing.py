"""Model routing and hot-swap (`operators.routing`) on the risk and reco operators, with a copied registry."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from models.registry import DEFAULT_ROOT, ModelRegistry
from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.reco.schemas import Click
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import RiskResult, Transaction
from operators.routing import Band, ModelSelector, Route, RouteConfigError, check_routes
from state import MemoryVersionedStore

HIGH_VALUE = Route(code="high_value", when={"amount": {"at_least": 500.0}}, model="risk@2")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A private copy of the committed registry with risk@1 current and risk@2 a candidate, reco@1 current (the
    copy keeps the versions these tests were written with; the shipped current ones are risk@3 and reco@2)."""
    shutil.copytree(DEFAULT_ROOT, tmp_path / "registry")
    copy = ModelRegistry(tmp_path / "registry")
    copy.promote("risk", 1)
    copy.promote("reco", 1)
    return copy


@pytest.fixture(scope="module")
def transactions() -> list[Transaction]:
    return [
        msgspec.convert({k: v for k, v in r.items() if k not in ("label", "pattern")}, Transaction)
        for r in generate_transactions(600, seed=21)
    ]


def _run(operator: RiskOperator, events: list[Transaction], store: Any = None) -> list[RiskResult]:
    store = store if store is not None else MemoryVersionedStore(codec=RISK_STATE_CODEC)
    return [r for e in events for r in operator.process(e, store.key(e.account_id), None)]


def _pinned(registry: ModelRegistry, ref: str, events: list[Transaction]) -> dict[str, bytes]:
    operator = RiskOperator()
    operator.open(OperatorContext(registry=registry, model_ref=ref))
    return {r.event_id: _bytes(r) for r in _run(operator, events)}


def _bytes(result: RiskResult) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(result, scored_at=0))


def test_bands_and_value_lists_match_like_documented() -> None:
    band = Band(at_least=10.0, below=20.0)
    assert band.contains(10) and band.contains(19.99) and not band.contains(20.0) and not band.contains(9.9)
    assert not band.contains("15") and not band.contains(True)
    route = Route(code="r", when={"country": ["BR", "AR"], "amount": {"below": 100}}, model="risk@2")
    assert set(route.conditions()) == {"country", "amount"}
    with pytest.raises(RouteConfigError, match=r"when.amount: a band needs at_least and/or below"):
        Route(code="r", when={"amount": {}}, model="risk@2")
    with pytest.raises(RouteConfigError, match=r"when.country: expected a list of values or a band"):
        Route(code="r", when={"country": "BR"}, model="risk@2")
    with pytest.raises(RouteConfigError, match=r"routes\[0\].when.colour: Transaction has no attribute"):
        check_routes([Route(code="r", when={"colour": ["red"]}, model="risk")], Transaction)


def test_routes_pick_the_model_per_event_and_results_name_it(
    registry: ModelRegistry, transactions: list[Transaction]
) -> None:
    latam = Route(code="latam", when={"country": ["BR", "AR", "MX"]}, model="risk@2")
    operator = RiskOperator(routes=[HIGH_VALUE, latam])
    operator.open(OperatorContext(registry=registry))
    results = _run(operator, transactions)
    assert len(results) == len(transactions)
    by_id = {t.event_id: t for t in transactions}
    expected = {
        e.event_id: "risk@2" if e.amount >= 500.0 or e.country in ("BR", "AR", "MX") else "risk@1"
        for e in transactions
    }
    assert {r.event_id: r.model for r in results} == expected
    assert set(expected.values()) == {"risk@1", "risk@2"}
    # State never depends on the model, so each result equals a run pinned to the model it names.
    pinned = {ref: _pinned(registry, ref, transactions) for ref in ("risk@1", "risk@2")}
    assert all(_bytes(r) == pinned[r.model][r.event_id] for r in results)
    differing = [r for r in results if pinned["risk@1"][r.event_id] != pinned["risk@2"][r.event_id]]
    assert differing, "the two models must score differently for the test to mean anything"
    assert all(by_id[r.event_id].amount > 0 for r in results)


def test_a_promotion_swaps_the_model_between_two_events(
    registry: ModelRegistry, transactions: list[Transaction]
) -> None:
    operator = RiskOperator()
    operator.open(OperatorContext(registry=registry))
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    assert operator.refresh_models() == []  # nothing promoted yet
    first = _run(operator, transactions[:300], store)
    registry.promote("risk", 2)
    swaps = operator.refresh_models()
    assert [(s.reference, s.old, s.new, s.error) for s in swaps] == [("risk", "risk@1", "risk@2", None)]
    second = _run(operator, transactions[300:], store)
    assert {r.model for r in first} == {"risk@1"} and {r.model for r in second} == {"risk@2"}
    pinned = {ref: _pinned(registry, ref, transactions) for ref in ("risk@1", "risk@2")}
    assert all(_bytes(r) == pinned[r.model][r.event_id] for r in first + second)
    assert operator.refresh_models() == []


def test_a_pinned_model_is_never_swapped(registry: ModelRegistry, transactions: list[Transaction]) -> None:
    operator = RiskOperator(routes=[HIGH_VALUE])
    operator.open(OperatorContext(registry=registry, model_ref="risk@1"))  # --model pins every event
    registry.promote("risk", 2)
    assert operator.refresh_models() == []
    assert {r.model for r in _run(operator, transactions[:200])} == {"risk@1"}


def test_an_incompatible_or_tampered_promotion_is_reported_once_and_the_old_model_stays(
    registry: ModelRegistry, transactions: list[Transaction]
) -> None:
    operator = RiskOperator()
    operator.open(OperatorContext(registry=registry))
    reco_file = registry.model_path("reco", 1)
    version = registry.register("risk", reco_file, {"kind": "session_gru_step"}, promote=True)
    swaps = operator.refresh_models()
    assert len(swaps) == 1 and swaps[0].new == f"risk@{version}" and "trained on features" in (swaps[0].error or "")
    assert operator.refresh_models() == []  # reported once, not on every poll
    assert {r.model for r in _run(operator, transactions[:50])} == {"risk@1"}
    shaped_like_risk = registry.register(
        "risk", reco_file, {"feature_names": registry.manifest("risk", 1)["feature_names"]}, promote=True
    )
    swaps = operator.refresh_models()
    assert len(swaps) == 1 and swaps[0].new == f"risk@{shaped_like_risk}"
    assert "feeds `features` and reads `probability`" in (swaps[0].error or "")
    registry.promote("risk", 2)
    with registry.model_path("risk", 2).open("ab") as f:
        f.write(b"\0")  # tampered after promotion
    swaps = operator.refresh_models()
    assert len(swaps) == 1 and "ModelIntegrityError" in (swaps[0].error or "")
    assert {r.model for r in _run(operator, transactions[50:100])} == {"risk@1"}


def test_selector_needs_open_and_lists_references(registry: ModelRegistry) -> None:
    selector = ModelSelector("risk", [HIGH_VALUE, Route(code="again", when={"country": ["DE"]}, model="risk@2")])
    assert selector.references == ("risk", "risk@2")
    selector.open(registry)
    assert {ref: m.ref for ref, m in selector.loaded.items()} == {"risk": "risk@1", "risk@2": "risk@2"}
    selector.open(registry, pinned="risk@2")
    assert selector.references == ("risk@2",) and selector.default == "risk@2"
    selector.open(registry)
    assert selector.default == "risk"  # a pin does not outlive the open that set it


def _click(n: int, session: str = "s-1", event_id: str | None = None) -> Click:
    return Click(event_id=event_id or f"c-{session}-{n}", user_id="u", session_id=session, item_id=n * 7 % 500,
                 action="view", ts=1_700_000_000_000 + n * 1000)


def test_reco_drops_a_retried_click_and_counts_it(registry: ModelRegistry) -> None:
    operator = RecoOperator()
    operator.open(OperatorContext(registry=registry))
    store = MemoryVersionedStore(codec=RECO_STATE_CODEC)
    state = store.key("s-1")
    clicks = [_click(n) for n in range(5)]
    first = [r for c in clicks for r in operator.process(c, state, None)]
    before = state.get()
    retried = [r for c in (clicks[1], clicks[4]) for r in operator.process(c, state, None)]
    assert retried == [] and operator.duplicates == 2 and state.get() == before
    assert [r.state_version for r in first] == [1, 2, 3, 4, 5]
    more = list(operator.process(_click(5), state, None))
    assert len(more) == 1 and more[0].state_version == 6
    # The same event id in another session is another event.
    assert len(list(operator.process(_click(0, session="s-2", event_id=clicks[0].event_id),
                                     store.key("s-2"), None))) == 1


def test_reco_routes_by_click_attributes(registry: ModelRegistry) -> None:
    version = registry.register("reco", registry.model_path("reco", 1), registry.manifest("reco", 1), promote=False)
    buying = Route(code="buying", when={"action": ["cart", "purchase"]}, model=f"reco@{version}")
    operator = RecoOperator(routes=[buying])
    operator.open(OperatorContext(registry=registry))
    store = MemoryVersionedStore(codec=RECO_STATE_CODEC)
    view = _click(1)
    cart = msgspec.structs.replace(_click(2), action="cart")
    results = [r for c in (view, cart) for r in operator.process(c, store.key(c.session_id), None)]
    assert [r.model for r in results] == ["reco@1", f"reco@{version}"]
