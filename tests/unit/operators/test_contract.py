"""The operator contract suite: runs over every registered pipeline's operator (the built-in ones and the
toy `counter` of the test tree), as the state contract suite runs over every store. What every runtime
relies on: open/process/refresh_models/duplicates/close, deterministic results, one state version per result,
retries dropped and counted, re-open after close."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

import tests.toy_pipeline  # noqa: F401 - registers the toy pipeline
from models.registry import REGISTRY_ENV
from operators.contract import OperatorContext
from operators.core import Failure, apply_operator
from operators.decoding import Rejection
from pipelines.registry import PipelineDefinition, definitions
from state import MemoryVersionedStore
from tests.toy_pipeline.model import registry_with_counter

EVENTS = 120
_WALL_CLOCK = re.compile(rb',"scored_at":[0-9]+')  # when a result was made: the one field not determined
DEFINITIONS = [d for d in definitions() if d.generate is not None]


@pytest.fixture(autouse=True, scope="module")
def _registry_with_the_toys_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The committed models plus the toy's `counter@1`, for every operator the suite opens."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REGISTRY_ENV, str(registry_with_counter(tmp_path_factory.mktemp("models") / "registry")))
        yield


def _events(definition: PipelineDefinition, n: int = EVENTS, seed: int = 4) -> list[Any]:
    assert definition.generate is not None
    decoder = definition.decoder()
    events = [decoder.decode(msgspec.json.encode(e)) for e in definition.generate(n, seed)]
    assert not any(isinstance(e, Rejection) for e in events)
    return events


def _score(definition: PipelineDefinition, operator: Any, events: list[Any]) -> tuple[list[bytes], Any]:
    """The encoded results (wall clock stripped) of `events` through the opened `operator`, and its store."""
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(definition.state_codec(), retention=definition.retention)
    out = []
    for event in events:
        results = apply_operator(operator, event, store.key(definition.key_of(event)), None)
        assert not isinstance(results, Failure), results
        out += [_WALL_CLOCK.sub(b"", definition.encode_result(r)) for r in results]
    return out, store


def _run(definition: PipelineDefinition, events: list[Any]) -> tuple[list[bytes], MemoryVersionedStore[Any], Any]:
    operator = definition.operator()
    operator.open(OperatorContext())
    out, store = _score(definition, operator, events)
    return out, store, operator


def test_the_suite_covers_every_pipeline() -> None:
    assert {"risk", "reco", "counter"} <= {d.name for d in DEFINITIONS}


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_operator_declares_what_runtimes_call(definition: PipelineDefinition) -> None:
    operator = definition.operator()
    for member in ("open", "process", "refresh_models", "close"):
        assert callable(getattr(type(operator), member)), member
    assert operator.duplicates == 0
    operator.open(OperatorContext())
    try:
        assert operator.refresh_models() == []  # nothing promoted since open
    finally:
        operator.close()


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_results_are_deterministic_and_each_writes_one_version(definition: PipelineDefinition) -> None:
    events = _events(definition)
    first, store, operator = _run(definition, events)
    second, _, _ = _run(definition, events)
    assert first == second and len(first) == len(events)
    per_key: dict[str, int] = {}
    for event in events:
        key = definition.key_of(event)
        per_key[key] = per_key.get(key, 0) + 1
    for key, count in per_key.items():
        latest = store.key(key).get()
        assert latest is not None and latest.version == count  # versions 1..count, one per result
    operator.close()


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_a_retry_changes_nothing_and_is_counted(definition: PipelineDefinition) -> None:
    events = _events(definition, 40)
    _, store, operator = _run(definition, events)
    retried = events[-1]
    state = store.key(definition.key_of(retried))
    before = state.get()
    results = apply_operator(operator, retried, state, None)
    assert results == [] and operator.duplicates == 1
    assert state.get() == before
    operator.close()


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.name)
def test_an_operator_reopens_after_close(definition: PipelineDefinition) -> None:
    events = _events(definition, 30)
    operator = definition.operator()
    operator.open(OperatorContext())
    operator.close()
    operator.open(OperatorContext())
    out, _ = _score(definition, operator, events)
    operator.close()
    expected, _, _ = _run(definition, events)
    assert out == expected
