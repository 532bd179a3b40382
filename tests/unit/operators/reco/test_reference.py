"""`RecoOperator` against the full-sequence torch reference (`models.training.reco.reference_scores`): a small
session GRU is trained, exported and registered with the training code's own manifest fields (popular items
included); the operator's hidden vector after every click of a session equals the reference hidden state after
the same prefix, and its scores are the reference scores of its items. Needs torch (the `train` extra, which
`make test` installs): without it the test fails at import, never skips.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch  # noqa: F401 - imported, never skipped: the reference needs torch (the `train` extra)

from models.registry import ModelRegistry
from models.synthetic import generate_clicks, sessions_of
from models.training.reco import (
    RecoTrainingConfig,
    SessionGRU,
    export_reco_step_onnx,
    popular_items,
    reco_manifest_fields,
    reference_scores,
    train_reco,
)
from operators.contract import OperatorContext
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator, SessionState
from operators.reco.schemas import Click
from state import MemoryVersionedStore, RetentionPolicy
from tests.unit.operators.reco.test_operator import most_clicked

CATALOG = 300
HIDDEN = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SessionGRU, ModelRegistry, list[int]]:
    stream = generate_clicks(5_000, seed=5, catalog_size=CATALOG, n_clusters=10)
    sessions = list(sessions_of(stream).values())
    config = RecoTrainingConfig(embedding_size=16, hidden_size=HIDDEN, epochs=1)
    result = train_reco(sessions, CATALOG, seed=5, config=config)
    folder = tmp_path_factory.mktemp("reco-reference")
    path = export_reco_step_onnx(result.model, folder / "reco.onnx", k=10)
    popular = popular_items([int(e["item_id"]) for e in stream], CATALOG)  # type: ignore[call-overload]
    registry = ModelRegistry(folder / "registry")
    registry.register("reco", path, reco_manifest_fields(result, k=10, popular=popular))
    return result.model, registry, popular


def test_training_writes_the_popular_items(trained: tuple[SessionGRU, ModelRegistry, list[int]]) -> None:
    _, registry, popular = trained
    stream = generate_clicks(5_000, seed=5, catalog_size=CATALOG, n_clusters=10)
    assert popular == most_clicked([int(e["item_id"]) for e in stream], CATALOG, 100)  # type: ignore[call-overload]
    assert registry.manifest("reco")["popular_items"] == popular


def test_hidden_after_n_clicks_equals_the_full_sequence_reference(
    trained: tuple[SessionGRU, ModelRegistry, list[int]],
) -> None:
    model, registry, _ = trained
    operator = RecoOperator()
    operator.open(OperatorContext(registry=registry))
    store: MemoryVersionedStore[SessionState] = MemoryVersionedStore(
        codec=RECO_STATE_CODEC, retention=RetentionPolicy()  # every version stays readable
    )
    holdout = [msgspec.convert(e, Click) for e in generate_clicks(3_000, seed=77, catalog_size=CATALOG, n_clusters=10)]
    results = {c.event_id: r for c in holdout for r in operator.process(c, store.key(c.session_id), None)}
    sessions: dict[str, list[Click]] = defaultdict(list)
    for c in holdout:
        sessions[c.session_id].append(c)
    checked = 0
    for clicks in [s for s in sessions.values() if len(s) >= 6][:25]:
        assert all(b.ts - a.ts <= operator.idle_timeout_ms for a, b in itertools.pairwise(clicks))
        states, scores = reference_scores(model, [c.item_id for c in clicks])
        for n, click in enumerate(clicks):
            result = results[click.event_id]
            stored = store.key(click.session_id).as_of(result.state_version)
            assert stored is not None
            np.testing.assert_allclose(np.asarray(stored.value.hidden, dtype=np.float32), states[n], atol=1e-5, rtol=0)
            np.testing.assert_allclose(result.scores, scores[n][result.items], atol=1e-5, rtol=0)
            earlier = {c.item_id for c in clicks[: n + 1]}
            unseen = np.array([i not in earlier for i in range(CATALOG)])
            assert min(result.scores) >= np.sort(scores[n][unseen])[::-1][9] - 1e-5  # they are the top 10
            checked += 1
    assert checked >= 150


def test_a_model_trained_by_the_pipeline_opens_with_its_popular_items(tmp_path: Path) -> None:
    """`streamscore models train reco` writes `popular_items` from its own training stream (seed, events)."""
    from pipelines.reco.training import RECO_CATALOG_SIZE
    from pipelines.training import train

    registry = ModelRegistry(tmp_path / "registry")
    version = train("reco", seed=3, registry=registry, events=8_000, progress=False)
    stream = generate_clicks(8_000, 3, catalog_size=RECO_CATALOG_SIZE)
    expected = popular_items([int(e["item_id"]) for e in stream], RECO_CATALOG_SIZE)  # type: ignore[call-overload]
    assert registry.manifest("reco", version)["popular_items"] == expected
    operator = RecoOperator()
    operator.open(OperatorContext(registry=registry, model_ref=f"reco@{version}"))
    store: MemoryVersionedStore[SessionState] = MemoryVersionedStore(codec=RECO_STATE_CODEC)
    first = msgspec.convert({**stream[0], "item_id": 10**9}, Click)  # out of vocabulary: cold start
    [result] = operator.process(first, store.key(first.session_id), None)
    assert result.items == expected[:10] and result.model == f"reco@{version}"
