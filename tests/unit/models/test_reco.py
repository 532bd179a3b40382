"""Session recommender: step-model ONNX vs torch parity, step-by-step vs full sequence, OOV and masking."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from models.handle import ModelHandle, file_sha256
from models.registry import DEFAULT_ROOT, ModelRegistry
from models.session_replay import replay_sessions
from models.synthetic import generate_clicks, sessions_of
from models.training.reco import (
    RecoTrainingConfig,
    SessionGRU,
    SessionGRUStep,
    export_reco_step_onnx,
    reference_scores,
    session_gru_from_onnx,
    train_reco,
)
from pipelines.training import DEFAULT_SEED, evaluate

CATALOG = 400
HIDDEN = 16


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SessionGRU, ModelHandle, list[list[int]]]:
    stream = generate_clicks(6_000, seed=3, catalog_size=CATALOG, n_clusters=10)
    sessions = list(sessions_of(stream).values())
    config = RecoTrainingConfig(embedding_size=16, hidden_size=HIDDEN, epochs=1)
    model = train_reco(sessions, CATALOG, seed=3, config=config).model
    path = export_reco_step_onnx(model, tmp_path_factory.mktemp("reco") / "reco.onnx", k=10)
    manifest = {
        "name": "reco",
        "version": 0,
        "sha256": file_sha256(path),
        "catalog_size": CATALOG,
        "hidden_size": HIDDEN,
        "k": 10,
    }
    return model, ModelHandle(path, manifest), sessions


def _torch_step(
    model: SessionGRU, item: np.ndarray, hidden: np.ndarray, seen: np.ndarray
) -> list[np.ndarray]:
    step = SessionGRUStep(model, 10).eval()
    with torch.no_grad():
        out = step(torch.from_numpy(item), torch.from_numpy(hidden), torch.from_numpy(seen))
    return [o.numpy() for o in out]


def test_onnx_step_matches_torch_step(trained: tuple[SessionGRU, ModelHandle, list[list[int]]]) -> None:
    model, handle, _ = trained
    rng = np.random.default_rng(0)
    for n in (1, 7, 64):
        item = rng.integers(-3, CATALOG + 3, size=n).astype(np.int64)
        hidden = rng.normal(0, 0.5, size=(n, HIDDEN)).astype(np.float32)
        seen = (rng.random((n, CATALOG)) < 0.05).astype(np.float32)
        got = handle.run({"item": item, "hidden": hidden, "seen": seen})
        new_hidden, top_items, top_scores = _torch_step(model, item, hidden, seen)
        assert got["new_hidden"].shape == (n, HIDDEN) and got["top_items"].dtype == np.int64
        np.testing.assert_allclose(got["new_hidden"], new_hidden, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got["top_scores"], top_scores, atol=1e-5, rtol=0)
        assert (got["top_items"] == top_items).mean() > 0.99  # only exact near-ties may swap


def test_step_by_step_equals_full_sequence(trained: tuple[SessionGRU, ModelHandle, list[list[int]]]) -> None:
    model, handle, sessions = trained
    for items in [s for s in sessions if len(s) >= 6][:5]:
        states, scores = reference_scores(model, items)
        hidden = np.zeros((1, HIDDEN), dtype=np.float32)
        seen = np.zeros((1, CATALOG), dtype=np.float32)
        for t, item in enumerate(items):
            out = handle.run({"item": np.array([item], dtype=np.int64), "hidden": hidden, "seen": seen})
            hidden = out["new_hidden"]
            np.testing.assert_allclose(hidden[0], states[t], atol=1e-5, rtol=0)
            seen[0, item] = 1.0
            expected = np.where(seen[0] > 0, -np.inf, scores[t])
            np.testing.assert_allclose(out["top_scores"][0], np.sort(expected)[::-1][:10], atol=1e-5, rtol=0)
            np.testing.assert_allclose(
                scores[t][out["top_items"][0]], out["top_scores"][0], atol=1e-5, rtol=0
            )


def test_out_of_range_items_use_the_oov_row(trained: tuple[SessionGRU, ModelHandle, list[list[int]]]) -> None:
    _, handle, _ = trained
    hidden = np.zeros((4, HIDDEN), dtype=np.float32)
    seen = np.zeros((4, CATALOG), dtype=np.float32)
    out = handle.run(
        {"item": np.array([-1, CATALOG, 10**9, -(10**12)], dtype=np.int64), "hidden": hidden, "seen": seen}
    )
    assert np.all(np.isfinite(out["new_hidden"]))
    for row in range(1, 4):
        np.testing.assert_array_equal(out["new_hidden"][row], out["new_hidden"][0])


def test_seen_and_current_items_are_never_recommended(
    trained: tuple[SessionGRU, ModelHandle, list[list[int]]],
) -> None:
    _, handle, _ = trained
    hidden = np.zeros((1, HIDDEN), dtype=np.float32)
    first = handle.run({"item": np.array([5]), "hidden": hidden, "seen": np.zeros((1, CATALOG), np.float32)})
    assert 5 not in first["top_items"][0]
    seen = np.zeros((1, CATALOG), dtype=np.float32)
    seen[0, first["top_items"][0]] = 1.0
    second = handle.run({"item": np.array([5]), "hidden": hidden, "seen": seen})
    assert not set(second["top_items"][0].tolist()) & set(first["top_items"][0].tolist())
    assert np.all(np.isfinite(second["top_scores"]))


def test_replay_scores_only_unseen_next_items(
    trained: tuple[SessionGRU, ModelHandle, list[list[int]]],
) -> None:
    _, handle, sessions = trained
    predictions = replay_sessions(handle, sessions[:50], batch_sessions=16)
    expected = sum(1 for s in sessions[:50] for t in range(len(s) - 1) if s[t + 1] not in s[: t + 1])
    assert len(predictions.targets) == expected == predictions.top_items.shape[0]
    for target, seen in zip(predictions.targets, predictions.seen, strict=True):
        assert int(target) not in seen


def test_click_stream_is_deterministic_and_well_formed() -> None:
    events = generate_clicks(5_000, seed=9)
    assert events == generate_clicks(5_000, seed=9)
    assert events != generate_clicks(5_000, seed=10)
    assert len(events) == 5_000
    ts = [int(e["ts"]) for e in events]  # type: ignore[call-overload]
    assert ts == sorted(ts)
    assert {e["action"] for e in events} == {"view", "click", "cart", "purchase"}
    assert all(0 <= int(e["item_id"]) < 5000 for e in events)  # type: ignore[call-overload]
    sessions = sessions_of(events)
    assert 300 <= len(sessions) <= 1_000
    # Sessions interleave in time: consecutive events mostly come from different sessions.
    switches = sum(a["session_id"] != b["session_id"] for a, b in itertools.pairwise(events))
    assert switches > 0.8 * len(events)
    # Popularity is skewed (Zipf): the 1 % most viewed items get far more than 1 % of the events.
    counts = np.sort(np.bincount([int(e["item_id"]) for e in events], minlength=5000))[::-1]  # type: ignore[call-overload]
    assert counts[:50].sum() > 0.05 * len(events)


@pytest.mark.parametrize(("n", "seed"), [(500, 9), (20_000, 5), (60_000, 21)])
@pytest.mark.parametrize("new_season", [False, True])
def test_click_times_have_no_artifacts(n: int, seed: int, new_season: bool) -> None:
    """Sorted as published, no instant gathers more than 0.1 % of the clicks, a session's clicks are >= 1 s
    apart, and a user is never in two sessions at once (the first generator put 17 % of a user's consecutive
    sessions on top of each other)."""
    events = generate_clicks(n, seed, new_season_from=0.4 if new_season else None)
    ts = [int(e["ts"]) for e in events]  # type: ignore[call-overload]
    assert ts == sorted(ts)
    assert Counter(ts).most_common(1)[0][1] <= max(1, n // 1000)
    spans: dict[object, list[int]] = {}
    user_of: dict[object, object] = {}
    for e, t in zip(events, ts, strict=True):
        if e["session_id"] in spans:
            assert t - spans[e["session_id"]][1] >= 1000, e
            spans[e["session_id"]][1] = t
        else:
            spans[e["session_id"]] = [t, t]
        user_of[e["session_id"]] = e["user_id"]
    by_user: dict[object, list[list[int]]] = {}
    for session, span in spans.items():
        by_user.setdefault(user_of[session], []).append(span)
    for sessions in by_user.values():
        sessions.sort()
        assert all(later[0] > earlier[1] for earlier, later in itertools.pairwise(sessions)), sessions


def test_committed_default_reco_model(tmp_path: Path) -> None:
    registry = ModelRegistry(DEFAULT_ROOT)
    handle = registry.load("reco")
    manifest = handle.manifest
    assert (
        manifest["catalog_size"] == 5000 and manifest["k"] == 10 and manifest["training_seed"] == DEFAULT_SEED
    )
    assert handle.input_names == ("item", "hidden", "seen")
    assert handle.output_names == ("new_hidden", "top_items", "top_scores")
    metrics = evaluate("reco", seed=4242, events=15_000, registry=registry)
    assert set(metrics) == {"hr_at_10", "mrr_at_10", "popularity_hr_at_10"}
    assert metrics["hr_at_10"] >= 2 * metrics["popularity_hr_at_10"]


def test_a_registered_step_model_reads_back_into_the_torch_model_it_was_exported_from(
    trained: tuple[SessionGRU, ModelHandle, list[list[int]]], tmp_path: Path
) -> None:
    model, handle, _ = trained
    restored = session_gru_from_onnx(handle.path, CATALOG, 16, HIDDEN)  # to fine-tune a production model
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value), name
    with pytest.raises(ValueError, match="not a session GRU step model"):
        import onnx

        graph = onnx.load(str(handle.path))
        del graph.graph.initializer[:]
        onnx.save(graph, str(tmp_path / "bare.onnx"))
        session_gru_from_onnx(tmp_path / "bare.onnx", CATALOG, 16, HIDDEN)
