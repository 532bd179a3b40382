"""The reco step without its seen mask (`operators.reco.ranking`): the committed step models rewired in memory give
the masked graph's top items and scores once the excluded items are dropped, the operator's results and states are
the same with and without it, a graph of another shape is served as registered, and a changed file is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from models.exceptions import ModelIntegrityError
from models.handle import ModelHandle
from models.registry import ModelRegistry
from models.synthetic import generate_clicks
from operators.batching import BatchItem
from operators.contract import OperatorContext
from operators.reco.operator import MAX_SEEN_ITEMS, RECO_STATE_CODEC, RecoOperator
from operators.reco.ranking import TOP_N, ranked_step
from operators.reco.schemas import Click
from state import MemoryVersionedStore
from state.contract import RetentionPolicy

CATALOG = 5000
K = 10


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Items (some outside the catalogue), hidden vectors (some zero), seen lists of 0..MAX_SEEN_ITEMS items."""
    items = rng.integers(-3, CATALOG + 3, n).astype(np.int64)
    hidden = rng.standard_normal((n, 64)).astype(np.float32)
    hidden[::7] = 0.0
    seen = []
    for j in range(n):
        size = int(rng.choice([0, 1, 5, 40, MAX_SEEN_ITEMS]))
        row = list(dict.fromkeys(rng.integers(0, CATALOG, size).tolist()))
        if 0 <= items[j] < CATALOG and items[j] not in row:
            row.append(int(items[j]))  # the operator's seen list holds the clicked item
        seen.append(row)
    return items, hidden, seen


@pytest.mark.parametrize("version", [1, 2])
def test_the_rewired_graph_ranks_what_the_masked_one_does_once_excluded_items_are_dropped(version: int) -> None:
    handle = ModelRegistry().load_ref(f"reco@{version}")
    ranked = ranked_step(handle)
    assert ranked is not None and {i.name for i in ranked._session.get_inputs()} == {"item", "hidden", TOP_N}
    rng = np.random.default_rng(version)
    for n in (1, 3, 64):
        items, hidden, seen = _rows(rng, n)
        mask = np.zeros((n, CATALOG), dtype=np.float32)
        for j, row in enumerate(seen):
            mask[j, row] = 1.0
        masked = handle.run({"item": items, "hidden": hidden, "seen": mask})
        top_n = min(CATALOG, K + 1 + max(len(row) for row in seen))
        out = ranked.run(items, hidden, top_n)
        top_items, top_scores = out["top_items"], out["top_scores"]
        assert top_items.shape == (n, top_n) and np.array_equal(out["new_hidden"], masked["new_hidden"])
        for j in range(n):
            kept = [(i, s) for i, s in zip(top_items[j].tolist(), top_scores[j].tolist(), strict=True)
                    if i not in set(seen[j])][:K]
            assert [i for i, _ in kept] == masked["top_items"][j].tolist(), (n, j)
            assert [s for _, s in kept] == masked["top_scores"][j].tolist(), (n, j)


def _results(ranked: bool, clicks: list[Click], batch: int) -> list[tuple[bytes, bytes]]:
    operator = RecoOperator()
    operator.open(OperatorContext())
    for facts in operator._facts.values():
        assert (facts.stepper._ranked is not None) is True
        if not ranked:
            facts.stepper._ranked = None
    store = MemoryVersionedStore(codec=RECO_STATE_CODEC, retention=RetentionPolicy(8))
    out = []
    for start in range(0, len(clicks), batch):
        part = clicks[start:start + batch]
        items = [BatchItem(key=c.session_id, event=c, state=store.key(c.session_id), source=None) for c in part]
        for click, outcome in zip(part, operator.process_batch(items), strict=True):
            assert isinstance(outcome, list)
            state = store.key(click.session_id).get()
            assert state is not None
            for result in outcome:
                encoded = msgspec.json.encode(msgspec.structs.replace(result, scored_at=0))
                out.append((encoded, RECO_STATE_CODEC.encode(state.value)))
    return out


def test_the_operator_gives_the_same_results_and_states_with_and_without_the_mask() -> None:
    stream = generate_clicks(3000, 31, catalog_size=CATALOG)
    clicks = [msgspec.convert(e, Click) for e in stream]
    with_mask = _results(False, clicks, 250)
    assert with_mask == _results(True, clicks, 250)
    assert len(with_mask) == len(clicks)


def test_a_graph_of_another_shape_is_served_as_registered(tmp_path: Path) -> None:
    from tests.unit.operators.reco.test_operator import _misbehaving_model

    path = _misbehaving_model(tmp_path / "other.onnx", 40, 4, [1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1])
    registry = ModelRegistry(tmp_path / "registry")
    committed = ModelRegistry().manifest("reco", 2)
    fields = {k: committed[k] for k in ("kind", "hidden_size", "k", "popular_items")} | {"catalog_size": 40}
    version = registry.register("reco", path, fields, promote=True)
    assert ranked_step(registry.load("reco", version)) is None


def test_a_model_file_changed_after_loading_is_refused(tmp_path: Path) -> None:
    committed = ModelRegistry()
    copy = tmp_path / "model.onnx"
    shutil.copy(committed.model_path("reco", 2), copy)
    handle = ModelHandle(copy, committed.manifest("reco", 2))
    copy.write_bytes(copy.read_bytes()[:-16] + bytes(16))
    with pytest.raises(ModelIntegrityError, match="no longer matches"):
        ranked_step(handle)
