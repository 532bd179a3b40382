"""`apply_operator_batch`: the model is called once per batch (risk) or once per wave of distinct sessions (reco),
and a batch whose model call fails is processed one event at a time, with the same outcomes.

Byte-identity of batched and unbatched outputs over long mixed streams is in `test_golden.py`
(`test_micro_batches_are_byte_identical_to_one_event_at_a_time`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import pytest

from models.exceptions import ModelError
from models.handle import BoundModel, ModelHandle
from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.core import Failure, apply_operator
from operators.dead_letter import Reason
from operators.reco.decoding import click_decoder
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator, _waves
from operators.reco.ranking import RankedStep
from operators.reco.schemas import Click
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import Transaction
from pipelines.kafka.publishing import synthetic_records
from state.contract import RetentionPolicy, SourceCoordinates
from state.memory import MemoryVersionedStore


def _risk_items(n: int) -> tuple[RiskOperator, MemoryVersionedStore[Any], list[BatchItem]]:
    operator = RiskOperator()
    operator.open(OperatorContext(model_ref="risk@1"))
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(RISK_STATE_CODEC, retention=RetentionPolicy(max_versions=8))
    decoder = transaction_decoder()
    items = []
    for number, (_, raw) in enumerate(synthetic_records("risk", n, 3)):
        event = decoder.decode(raw)
        assert isinstance(event, Transaction)
        items.append(BatchItem(event.account_id, event, store.key(event.account_id), SourceCoordinates("t", 0, number)))
    return operator, store, items


def _reco_items(n: int) -> tuple[RecoOperator, list[BatchItem]]:
    operator = RecoOperator()
    operator.open(OperatorContext(model_ref="reco@1"))
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(RECO_STATE_CODEC, retention=RetentionPolicy(max_versions=8))
    decoder = click_decoder()
    items = []
    for number, (_, raw) in enumerate(synthetic_records("reco", n, 3)):
        event = decoder.decode(raw)
        assert isinstance(event, Click)
        items.append(BatchItem(event.session_id, event, store.key(event.session_id), SourceCoordinates("c", 0, number)))
    return operator, items


def _count_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch sizes of every model call from now on: `ModelHandle.run` and `RankedStep.run` (their rows) and
    `BoundModel.run` (a lone row on preallocated inputs: 1)."""
    sizes: list[int] = []
    original, original_bound = ModelHandle.run, BoundModel.run

    def counting(self: ModelHandle, inputs: Any) -> Any:
        sizes.append(len(next(iter(inputs.values()))))
        return original(self, inputs)

    def counting_bound(self: BoundModel) -> Any:
        sizes.append(1)
        return original_bound(self)

    def counting_ranked(self: RankedStep, items: Any, hidden: Any, top_n: int) -> Any:
        sizes.append(len(items))
        return original_ranked(self, items, hidden, top_n)

    original_ranked = RankedStep.run
    monkeypatch.setattr(ModelHandle, "run", counting)
    monkeypatch.setattr(BoundModel, "run", counting_bound)
    monkeypatch.setattr(RankedStep, "run", counting_ranked)
    return sizes


def test_risk_batch_calls_the_model_once_for_all_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    operator, _, items = _risk_items(300)
    assert 10 < len({item.key for item in items}) < 300  # many accounts, each with several events
    sizes = _count_runs(monkeypatch)
    outcomes = apply_operator_batch(operator, items)
    assert sizes == [300]
    assert all(isinstance(o, list) and len(o) == 1 for o in outcomes)


def test_reco_batch_calls_the_model_once_per_wave(monkeypatch: pytest.MonkeyPatch) -> None:
    operator, items = _reco_items(400)
    per_session = Counter(item.key for item in items)
    waves = _waves(items)
    assert len(waves) == max(per_session.values()) > 1
    assert [len(w) for w in waves] == [sum(1 for c in per_session.values() if c > w) for w in range(len(waves))]
    sizes = _count_runs(monkeypatch)
    outcomes = apply_operator_batch(operator, items)
    assert sizes == [len(w) for w in waves]
    assert all(isinstance(o, list) and len(o) == 1 for o in outcomes)


def test_a_failing_batch_call_falls_back_to_one_event_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched call fails (the unbatched path runs on the bound model and succeeds): nothing was written by
    the failed attempt, so every outcome, state version and duplicate count equals the unbatched run's."""
    reference_op, reference_store, reference_items = _risk_items(200)
    reference_items.insert(50, reference_items[10])  # a retry inside the batch
    expected = [apply_operator(reference_op, i.event, i.state, i.source) for i in reference_items]

    operator, store, items = _risk_items(200)
    items.insert(50, items[10])

    def failing(self: ModelHandle, inputs: Any) -> Any:
        raise ModelError("batch call refused")

    monkeypatch.setattr(ModelHandle, "run", failing)
    got = apply_operator_batch(operator, items)

    def strip(outcomes: list[list[Any] | Failure]) -> list[Any]:
        return [o if isinstance(o, Failure) else [msgspec.structs.replace(r, scored_at=0) for r in o] for o in outcomes]

    assert strip(got) == strip(expected)
    assert operator.duplicates == reference_op.duplicates == 1
    assert store.key(items[0].key).history(8) == reference_store.key(items[0].key).history(8)


def test_a_record_that_fails_in_a_batch_is_a_dead_letter_and_its_key_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule raising on one event: that event is an `operator_error`, the key's later events in the batch are
    scored on the state before it, exactly as one at a time."""
    reference_op, _, reference_items = _risk_items(120)
    operator, _, items = _risk_items(120)
    bad = items[40].event.event_id
    original = type(operator.rules).evaluate

    def evaluate(self: Any, event: Any, *args: Any) -> Any:
        if event.event_id == bad:
            raise ValueError("rule blew up")
        return original(self, event, *args)

    monkeypatch.setattr(type(operator.rules), "evaluate", evaluate)
    expected = [apply_operator(reference_op, i.event, i.state, i.source) for i in reference_items]
    got = apply_operator_batch(operator, items)
    assert got[40] == Failure(Reason.OPERATOR_ERROR, "ValueError: rule blew up") == expected[40]
    same_key = [i for i, item in enumerate(items) if item.key == items[40].key and i > 40]
    assert same_key, "the stream must have later events of that account"
    for i in same_key:
        a, b = got[i], expected[i]
        assert isinstance(a, list) and isinstance(b, list)
        assert msgspec.structs.replace(a[0], scored_at=0) == msgspec.structs.replace(b[0], scored_at=0)
