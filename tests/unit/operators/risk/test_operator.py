"""`RiskOperator` end to end on the memory store with the committed `risk@3` model: one result per event,
per-account versions, the stored vector is the scored vector, determinism, separation of fraud, and the
start-up checks (process before open, a model trained on other features).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from models.registry import DEFAULT_ROOT, ModelRegistry
from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.exceptions import OperatorError
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, TransactionView, update
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator, RiskState
from operators.risk.policy import decide
from operators.risk.schemas import RiskResult, Transaction
from state import MemoryVersionedStore, SourceCoordinates, StateVersion

N_EVENTS = 2000
SEED = 11
TOPIC = "transactions"
COMPUTED_MANIFEST_KEYS = ("name", "version", "sha256", "created", "opset", "inputs", "outputs")


@dataclass(frozen=True)
class Scored:
    """One processed event: its input, the results, and the state version read back right after."""

    record: dict[str, Any]
    event: Transaction
    results: list[RiskResult]
    stored: StateVersion[RiskState] | None


def _transactions(records: list[dict[str, Any]]) -> list[Transaction]:
    return [msgspec.json.decode(msgspec.json.encode(r), type=Transaction) for r in records]


def _committed_context() -> OperatorContext:
    """The default context, pinned to the committed registry whatever the environment says."""
    return OperatorContext(registry=ModelRegistry(DEFAULT_ROOT))


def _process_all(records: list[dict[str, Any]]) -> tuple[RiskOperator, MemoryVersionedStore[RiskState], list[Scored]]:
    operator = RiskOperator()
    operator.open(_committed_context())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    scored = []
    for offset, (record, event) in enumerate(zip(records, _transactions(records), strict=True)):
        state = store.key(event.account_id)
        results = list(operator.process(event, state, SourceCoordinates(TOPIC, 0, offset)))
        stored = state.as_of(results[0].state_version) if len(results) == 1 else None
        scored.append(Scored(record, event, results, stored))
    return operator, store, scored


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return generate_transactions(N_EVENTS, seed=SEED)


@pytest.fixture(scope="module")
def run(records: list[dict[str, Any]]) -> tuple[RiskOperator, MemoryVersionedStore[RiskState], list[Scored]]:
    return _process_all(records)


def test_committed_model_is_loaded(run: tuple[RiskOperator, Any, list[Scored]]) -> None:
    operator, _, scored = run
    assert operator.model.ref == "risk@3"
    assert operator.model.manifest["feature_names"] == list(FEATURE_NAMES)
    assert {s.results[0].model for s in scored} == {"risk@3"}


def test_one_result_per_event_echoing_the_event(run: tuple[RiskOperator, Any, list[Scored]]) -> None:
    _, _, scored = run
    assert len(scored) == N_EVENTS
    for s in scored:
        assert len(s.results) == 1
        result = s.results[0]
        assert (result.event_id, result.account_id, result.ts) == (s.event.event_id, s.event.account_id, s.event.ts)
        assert 0.0 <= result.score <= 1.0
        assert result.decision in ("approve", "review", "block")
        assert isinstance(result.scored_at, int) and result.scored_at > 0


def test_state_version_counts_per_account_in_order(run: tuple[RiskOperator, Any, list[Scored]]) -> None:
    _, store, scored = run
    versions: dict[str, list[int]] = defaultdict(list)
    for s in scored:
        versions[s.event.account_id].append(s.results[0].state_version)
    assert len(versions) > 1
    for account, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), account
        latest = store.key(account).get()
        assert latest is not None and latest.version == len(seen)
    assert sorted(store.keys()) == sorted(versions)


def test_stored_version_records_the_event_and_the_scored_vector(
    run: tuple[RiskOperator, Any, list[Scored]],
) -> None:
    operator, _, scored = run
    replayed: dict[str, RiskFeatureState] = defaultdict(RiskFeatureState)
    recent: dict[str, list[int]] = defaultdict(list)
    for offset, s in enumerate(scored):
        stored, result, event = s.stored, s.results[0], s.event
        assert stored is not None and stored.version == result.state_version
        assert stored.event_time == event.ts
        assert stored.source == SourceCoordinates(TOPIC, 0, offset)
        assert stored.value.last_event_id == event.event_id
        # Recompute the vector independently from the account's events so far.
        view = TransactionView(event.amount, event.merchant_id, event.country, event.device_id, event.ts)
        before = replayed[event.account_id]
        replayed[event.account_id], vector = update(before, view)
        assert stored.value.scored_features == vector.tolist()
        assert msgspec.msgpack.encode(stored.value.features) == msgspec.msgpack.encode(replayed[event.account_id])
        # The model on the stored vector gives the reported score; the decision follows the policy.
        features = stored.value.scored_features
        out = operator.model.run({"features": np.array([features], dtype=np.float32)})
        assert abs(float(out["probability"].reshape(-1)[0]) - result.score) <= 1e-6
        vector32 = np.array(features, dtype=np.float32)
        outcome = operator.rules.evaluate(event, before, recent[event.account_id], vector32)
        recent[event.account_id] = outcome.recent_ts
        assert stored.value.recent_ts == outcome.recent_ts
        expected = decide(result.score, vector32, operator.thresholds, outcome.fired, stats=operator.feature_stats)
        assert (result.decision, result.reasons) == expected


def test_fraud_scores_higher_than_legit(run: tuple[RiskOperator, Any, list[Scored]]) -> None:
    _, _, scored = run
    fraud = [s.results[0].score for s in scored if s.record["label"] == 1]
    legit = [s.results[0].score for s in scored if s.record["label"] == 0]
    assert fraud and legit
    assert np.mean(fraud) > np.mean(legit)
    # and the decisions follow: fraud is escalated more often than legit traffic
    escalated = {
        label: np.mean([s.results[0].decision != "approve" for s in scored if s.record["label"] == label])
        for label in (0, 1)
    }
    assert escalated[1] > escalated[0]


def test_replay_with_a_fresh_store_is_identical_except_scored_at(
    records: list[dict[str, Any]], run: tuple[RiskOperator, MemoryVersionedStore[RiskState], list[Scored]]
) -> None:
    _, store, scored = run
    _, store_again, scored_again = _process_all(records)

    def canonical(results: list[RiskResult]) -> list[bytes]:
        return [msgspec.json.encode(msgspec.structs.replace(r, scored_at=0)) for r in results]

    assert [canonical(s.results) for s in scored_again] == [canonical(s.results) for s in scored]
    for account in sorted(store.keys()):
        first, again = store.key(account).get(), store_again.key(account).get()
        assert first is not None and again is not None
        assert RISK_STATE_CODEC.encode(first.value) == RISK_STATE_CODEC.encode(again.value)


# ---------------------------------------------------------------------------------------- lifecycle


def _one_event() -> Transaction:
    return _transactions(generate_transactions(50, seed=SEED))[0]


def test_process_before_open_raises_and_writes_nothing() -> None:
    operator = RiskOperator()
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    event = _one_event()
    with pytest.raises(OperatorError, match="before open"):
        list(operator.process(event, store.key(event.account_id), None))
    assert store.key(event.account_id).get() is None
    with pytest.raises(OperatorError):
        _ = operator.model


def test_process_after_close_raises() -> None:
    operator = RiskOperator()
    operator.open(_committed_context())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    event = _one_event()
    assert len(list(operator.process(event, store.key(event.account_id), None))) == 1
    operator.close()
    with pytest.raises(OperatorError):
        list(operator.process(event, store.key(event.account_id), None))
    latest = store.key(event.account_id).get()
    assert latest is not None and latest.version == 1


def _register_copy(registry: ModelRegistry, feature_names: list[str] | None, *, promote: bool | None = None) -> int:
    """Register the committed current risk model file again, with its manifest but other `feature_names`."""
    committed = ModelRegistry(DEFAULT_ROOT)
    current = committed.current("risk")
    assert current is not None
    manifest = {k: v for k, v in committed.manifest("risk", current).items() if k not in COMPUTED_MANIFEST_KEYS}
    if feature_names is None:
        del manifest["feature_names"]
    else:
        manifest["feature_names"] = feature_names
    return registry.register("risk", committed.model_path("risk", current), manifest, promote=promote)


ALTERED = {
    "reversed": list(reversed(FEATURE_NAMES)),
    "renamed": ["log_amount_usd", *FEATURE_NAMES[1:]],
    "dropped": list(FEATURE_NAMES[:-1]),
    "added": [*FEATURE_NAMES, "hour_of_day"],
    "missing": None,
}


@pytest.mark.parametrize("kind", sorted(ALTERED))
def test_model_with_other_feature_names_is_refused_at_open(kind: str, tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    _register_copy(registry, ALTERED[kind])
    assert registry.manifest("risk").get("feature_names") == ALTERED[kind]
    with pytest.raises(OperatorError) as info:
        RiskOperator().open(OperatorContext(registry=registry))
    message = str(info.value)
    assert "risk@1" in message and "feature" in message and FEATURE_NAMES[0] in message


def test_compatible_copy_opens_and_a_pinned_incompatible_version_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    assert _register_copy(registry, list(FEATURE_NAMES)) == 1
    assert _register_copy(registry, ALTERED["reversed"], promote=False) == 2
    event = _one_event()
    good = RiskOperator()
    good.open(OperatorContext(registry=registry))  # current: the compatible copy
    assert good.model.ref == "risk@1"
    reference = RiskOperator()
    reference.open(_committed_context())
    scores = []
    for operator in (good, reference):
        store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
        scores.append(next(iter(operator.process(event, store.key(event.account_id), None))).score)
    assert scores[0] == scores[1]
    with pytest.raises(OperatorError, match="risk@2"):
        RiskOperator().open(OperatorContext(registry=registry, model_ref="risk@2"))
    pinned = RiskOperator()
    pinned.open(OperatorContext(registry=registry, model_ref="risk@1"))
    assert pinned.model.ref == "risk@1"


def test_refused_model_is_not_left_loaded(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    _register_copy(registry, ALTERED["reversed"])
    operator = RiskOperator()
    with pytest.raises(OperatorError):
        operator.open(OperatorContext(registry=registry))
    event = _one_event()
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    with pytest.raises(OperatorError):
        list(operator.process(event, store.key(event.account_id), None))
    assert store.key(event.account_id).get() is None


def test_manifest_of_the_committed_model_matches_the_operator() -> None:
    manifest = json.loads((DEFAULT_ROOT / "risk" / "1" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["inputs"][0]["shape"][-1] == len(FEATURE_NAMES)
