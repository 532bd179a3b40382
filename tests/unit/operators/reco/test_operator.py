"""`RecoOperator` end to end on the memory store with the committed `reco@2` model: one result per click, per-session
versions, top-k without the session's items, one ONNX step per click (equal to stepping the model by hand), idle
reset, out-of-order clicks, cold start and the defensive re-check (a deliberately misbehaving ONNX graph),
determinism, the start-up checks of the manifest, and HR@10 against a popularity baseline on a holdout stream.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.evaluation import hr_at_k, popularity_top_k
from models.handle import BoundModel
from models.registry import DEFAULT_ROOT, ModelRegistry
from models.synthetic import generate_clicks
from operators.contract import OperatorContext
from operators.exceptions import OperatorConfigError, OperatorError
from operators.reco.operator import (
    MAX_SEEN_ITEMS,
    RECO_STATE_CODEC,
    RecoOperator,
    SessionState,
    remember,
)
from operators.reco.schemas import Click, RecoResult
from state import MemoryVersionedStore, SourceCoordinates, StateVersion

HOLDOUT_SEED = 2024  # the committed model was trained on seed 1 and evaluated on seed 1002
HOLDOUT_EVENTS = 8000
TOPIC = "clicks"
T0 = 1_767_225_600_000
COMPUTED_MANIFEST_KEYS = ("name", "version", "sha256", "created", "opset", "inputs", "outputs")


@dataclass(frozen=True)
class Scored:
    """One processed click: the click, its results and the state version read back right after."""

    click: Click
    results: list[RecoResult]
    stored: StateVersion[SessionState] | None


def _committed_context() -> OperatorContext:
    """The default context, pinned to the committed registry whatever the environment says."""
    return OperatorContext(registry=ModelRegistry(DEFAULT_ROOT))


def _opened(k: int = 10, idle_timeout_ms: int = 30 * 60 * 1000, ctx: OperatorContext | None = None) -> RecoOperator:
    operator = RecoOperator(k=k, idle_timeout_ms=idle_timeout_ms)
    operator.open(ctx or _committed_context())
    return operator


def _store() -> MemoryVersionedStore[SessionState]:
    return MemoryVersionedStore(codec=RECO_STATE_CODEC)


def _click(item: int, ts: int, session: str = "s-1", n: int = 0) -> Click:
    return Click(event_id=f"e-{session}-{n}", user_id="u-1", session_id=session, item_id=item, action="view", ts=ts)


def _clicks(records: list[dict[str, Any]]) -> list[Click]:
    return [msgspec.convert(r, Click) for r in records]


def _process(operator: RecoOperator, store: MemoryVersionedStore[SessionState], clicks: list[Click]) -> list[Scored]:
    scored = []
    for offset, click in enumerate(clicks):
        state = store.key(click.session_id)
        results = list(operator.process(click, state, SourceCoordinates(TOPIC, 0, offset)))
        stored = state.as_of(results[0].state_version) if len(results) == 1 else None
        scored.append(Scored(click, results, stored))
    return scored


def _feed(operator: RecoOperator, store: MemoryVersionedStore[SessionState], *clicks: Click) -> list[RecoResult]:
    out: list[RecoResult] = []
    for click in clicks:
        out.extend(operator.process(click, store.key(click.session_id), None))
    return out


def _latest(store: MemoryVersionedStore[SessionState], session: str = "s-1") -> SessionState:
    latest = store.key(session).get()
    assert latest is not None
    return latest.value


@pytest.fixture(scope="module")
def operator() -> RecoOperator:
    return _opened()


@pytest.fixture(scope="module")
def holdout() -> list[Click]:
    return _clicks(generate_clicks(HOLDOUT_EVENTS, seed=HOLDOUT_SEED))


@pytest.fixture(scope="module")
def run(operator: RecoOperator, holdout: list[Click]) -> list[Scored]:
    return _process(operator, _store(), holdout)


# ------------------------------------------------------------------------------------------- the stream
def test_committed_model_is_loaded(operator: RecoOperator) -> None:
    assert operator.model.ref == "reco@2"
    assert len(operator.model.manifest["popular_items"]) == 100


def test_one_result_per_click_echoing_the_click(run: list[Scored]) -> None:
    for s in run:
        assert len(s.results) == 1
        r = s.results[0]
        assert (r.event_id, r.user_id, r.session_id, r.ts) == (
            s.click.event_id, s.click.user_id, s.click.session_id, s.click.ts,
        )
        assert r.model == "reco@2" and r.scored_at > 0


def test_state_version_counts_per_session(run: list[Scored]) -> None:
    versions: dict[str, list[int]] = defaultdict(list)
    for s in run:
        versions[s.click.session_id].append(s.results[0].state_version)
    assert len(versions) > 100
    for got in versions.values():
        assert got == list(range(1, len(got) + 1))


def test_k_distinct_ranked_items_never_seen_earlier_in_the_session(run: list[Scored]) -> None:
    session_items: dict[str, set[int]] = defaultdict(set)
    for s in run:
        session_items[s.click.session_id].add(s.click.item_id)
        r = s.results[0]
        assert len(r.items) == 10 and len(set(r.items)) == 10 and len(r.scores) == 10
        assert not set(r.items) & session_items[s.click.session_id]
        assert all(0 <= i < 5000 for i in r.items)
        assert r.scores == sorted(r.scores, reverse=True)
        assert all(isinstance(x, float) and round(x, 6) == x for x in r.scores)


def test_stored_state_is_the_session_so_far(run: list[Scored]) -> None:
    sessions: dict[str, list[Click]] = defaultdict(list)
    for offset, s in enumerate(run):
        sessions[s.click.session_id].append(s.click)
        assert s.stored is not None and s.stored.version == s.results[0].state_version
        assert s.stored.event_time == s.click.ts and s.stored.source == SourceCoordinates(TOPIC, 0, offset)
        state = s.stored.value
        clicks = sessions[s.click.session_id]
        assert state.events == len(clicks) and state.model == "reco@2"
        assert state.last_ts == max(c.ts for c in clicks)
        assert len(state.hidden) == 64
        expected_seen: list[int] = []
        for c in clicks:
            expected_seen = [i for i in expected_seen if i != c.item_id] + [c.item_id]
        assert state.seen == expected_seen


def test_hidden_and_top_items_equal_stepping_the_model_by_hand(operator: RecoOperator, run: list[Scored]) -> None:
    """The operator's state after each click is exactly one step of the ONNX model from the previous state."""
    handle = operator.model
    by_session: dict[str, list[Scored]] = defaultdict(list)
    for s in run:
        by_session[s.click.session_id].append(s)
    checked = 0
    for steps in [v for v in by_session.values() if len(v) >= 5][:30]:
        hidden = np.zeros((1, 64), dtype=np.float32)
        seen = np.zeros((1, 5000), dtype=np.float32)
        for s in steps:
            seen[0, s.click.item_id] = 1.0
            out = handle.run({"item": np.array([s.click.item_id], dtype=np.int64), "hidden": hidden, "seen": seen})
            hidden = out["new_hidden"]
            assert s.stored is not None
            np.testing.assert_allclose(np.asarray(s.stored.value.hidden, dtype=np.float32), hidden[0], atol=1e-6)
            assert s.results[0].items == out["top_items"][0].tolist()
            assert s.results[0].scores == [round(float(x), 6) for x in out["top_scores"][0]]
            checked += 1
    assert checked > 150


def test_exactly_one_model_step_per_click(holdout: list[Click], monkeypatch: pytest.MonkeyPatch) -> None:
    operator = _opened()
    handle = operator.model
    calls: list[dict[str, np.ndarray]] = []
    original = handle.run

    original_bound = BoundModel.run

    def counting(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append({k: v.copy() for k, v in inputs.items()})
        return original(inputs)

    def counting_bound(bound: BoundModel) -> None:  # the operator's usual path: the model bound to its arrays
        calls.append({k: v.copy() for k, v in bound.inputs.items()})
        original_bound(bound)

    monkeypatch.setattr(handle, "run", counting)
    monkeypatch.setattr(BoundModel, "run", counting_bound)
    store = _store()
    longest = max({c.session_id for c in holdout}, key=lambda s: sum(c.session_id == s for c in holdout[:2000]))
    others = [c for c in holdout[:1000] if c.session_id != longest][:200]  # no click twice (it'd be a retry)
    clicks = [c for c in holdout if c.session_id == longest] + others
    assert len(clicks) > 215
    for n, click in enumerate(clicks, start=1):
        list(operator.process(click, store.key(click.session_id), None))
        assert len(calls) == n  # one step, whatever the length of the session so far
        assert calls[-1]["item"].tolist() == [click.item_id] and calls[-1]["hidden"].shape == (1, 64)


def test_seen_items_are_bounded_and_excluded(operator: RecoOperator) -> None:
    store = _store()
    items = list(range(100, 100 + MAX_SEEN_ITEMS + 50))
    results = _feed(operator, store, *(_click(item, T0 + 1000 * n, n=n) for n, item in enumerate(items)))
    state = _latest(store)
    assert state.seen == items[-MAX_SEEN_ITEMS:] and state.events == len(items)
    for n, r in enumerate(results):
        assert len(r.items) == 10
        assert not set(r.items) & set(items[max(0, n + 1 - MAX_SEEN_ITEMS) : n + 1])


def test_remember_moves_repeats_to_the_end_and_skips_out_of_catalogue_items() -> None:
    assert remember([1, 2, 3], 2, 10) == [1, 3, 2]
    assert remember([1, 2, 3], 10, 10) == [1, 2, 3]
    assert remember([1, 2, 3], -1, 10) == [1, 2, 3]
    assert remember([1, 2, 3], 4, 10, limit=3) == [2, 3, 4]


# ------------------------------------------------------------------------------------------- time
def test_idle_timeout_resets_the_session_like_a_fresh_one() -> None:
    operator = _opened(idle_timeout_ms=60_000)
    store, fresh = _store(), _store()
    late = _click(30, T0 + 1000 + 60_001, n=3)
    before = _feed(operator, store, _click(10, T0, n=1), _click(20, T0 + 1000, n=2))
    [after] = _feed(operator, store, late)
    [alone] = _feed(operator, fresh, late)
    state, alone_state = _latest(store), _latest(fresh)
    assert state.hidden == alone_state.hidden and any(x != 0.0 for x in state.hidden)
    assert state.seen == [30] and state.events == 1 and state.last_ts == late.ts
    assert (after.items, after.scores) == (alone.items, alone.scores)
    assert after.state_version == 3 and alone.state_version == 1 and len(before) == 2
    # Within the timeout (a gap of exactly idle_timeout_ms included) the session goes on.
    continued = _store()
    _feed(operator, continued, _click(10, T0, n=1), _click(20, T0 + 1000, n=2), _click(30, T0 + 61_000, n=3))
    assert _latest(continued).events == 3 and _latest(continued).seen == [10, 20, 30]
    assert _latest(continued).hidden != alone_state.hidden


def test_out_of_order_clicks_are_scored_and_never_reset() -> None:
    operator = _opened(idle_timeout_ms=60_000)
    store, fresh = _store(), _store()
    clicks = [
        _click(10, T0, n=1),
        _click(20, T0 + 10_000, n=2),
        _click(30, T0 + 5_000, n=3),
        _click(40, T0 - 10 * 60_000, n=4),  # far earlier than the newest click: still the same session
    ]
    results = _feed(operator, store, *clicks)
    assert [r.state_version for r in results] == [1, 2, 3, 4]
    assert all(len(r.items) == 10 for r in results)
    state = _latest(store)
    assert state.events == 4 and state.last_ts == T0 + 10_000 and state.seen == [10, 20, 30, 40]
    _feed(operator, fresh, clicks[-1])
    assert state.hidden != _latest(fresh).hidden
    assert store.key("s-1").as_of_time(T0 - 1) is not None  # the late click's version carries its own event time


# ------------------------------------------------------------------------------------------- cold start
def test_first_click_out_of_vocabulary_gets_the_popular_items(operator: RecoOperator) -> None:
    popular = operator.model.manifest["popular_items"]
    store = _store()
    [first] = _feed(operator, store, _click(10**9, T0, n=1))
    assert first.items == popular[:10] and first.scores == [0.0] * 10
    state = _latest(store)
    assert state.seen == [] and state.events == 1 and any(x != 0.0 for x in state.hidden)  # the step ran
    [second] = _feed(operator, store, _click(popular[0], T0 + 1000, n=2))
    assert popular[0] not in second.items and all(x != 0.0 for x in second.scores)


def test_out_of_vocabulary_click_inside_a_session_is_scored_by_the_model(operator: RecoOperator) -> None:
    store = _store()
    _, oov = _feed(operator, store, _click(42, T0, n=1), _click(5000, T0 + 1000, n=2))
    assert len(oov.items) == 10 and 42 not in oov.items and all(x != 0.0 for x in oov.scores)
    assert _latest(store).seen == [42]


def _misbehaving_model(path: Path, catalog: int, hidden: int, items: list[int], scores: list[float]) -> Path:
    """A valid step-model graph that ignores `seen` and always answers `items`/`scores` (batch-broadcast)."""
    k = len(items)
    nodes = [
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])),
        helper.make_node("Add", ["hidden", "one"], ["new_hidden"]),
        helper.make_node("Constant", [], ["zero_i"], value=helper.make_tensor("zero_i", TensorProto.INT64, [], [0])),
        helper.make_node("Mul", ["item", "zero_i"], ["zeros_i"]),
        helper.make_node("Constant", [], ["axis"], value=helper.make_tensor("axis", TensorProto.INT64, [1], [1])),
        helper.make_node("Unsqueeze", ["zeros_i", "axis"], ["column_i"]),
        helper.make_node("Constant", [], ["row_i"],
                         value=helper.make_tensor("row_i", TensorProto.INT64, [1, k], items)),
        helper.make_node("Add", ["column_i", "row_i"], ["top_items"]),
        helper.make_node("Cast", ["column_i"], ["column_f"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["row_f"],
                         value=helper.make_tensor("row_f", TensorProto.FLOAT, [1, k], scores)),
        helper.make_node("Add", ["column_f", "row_f"], ["top_scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "misbehaving_step",
        [
            helper.make_tensor_value_info("item", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["N", hidden]),
            helper.make_tensor_value_info("seen", TensorProto.FLOAT, ["N", catalog]),
        ],
        [
            helper.make_tensor_value_info("new_hidden", TensorProto.FLOAT, ["N", hidden]),
            helper.make_tensor_value_info("top_items", TensorProto.INT64, ["N", k]),
            helper.make_tensor_value_info("top_scores", TensorProto.FLOAT, ["N", k]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_defensive_recheck_drops_bad_model_items_and_fills_from_popularity(tmp_path: Path) -> None:
    catalog = 40
    registry = ModelRegistry(tmp_path / "registry")
    path = _misbehaving_model(
        tmp_path / "bad.onnx",
        catalog,
        4,
        items=[3, 3, -1, 45, 7, 8, 9, 11, 12, 13],
        scores=[9.0, 8.0, 7.0, 6.0, 5.0, float("-inf"), float("nan"), 4.25, 3.0, 2.0],
    )
    popular = [7, 3, 20, 21, 11, 22, 23, 24, 25, 26, 27, 28]
    fields = {"kind": "session_gru_step", "catalog_size": catalog, "hidden_size": 4, "k": 10, "popular_items": popular}
    registry.register("reco", path, fields)
    operator = _opened(ctx=OperatorContext(registry=registry))
    store = _store()
    [first, second] = _feed(operator, store, _click(3, T0, n=1), _click(20, T0 + 1000, n=2))
    # current item (3), its duplicate, out-of-range ids (-1, 45), -inf and NaN scores are dropped
    assert first.items == [7, 11, 12, 13, 20, 21, 22, 23, 24, 25]
    assert first.scores == [5.0, 4.25, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert second.items == [7, 11, 12, 13, 21, 22, 23, 24, 25, 26]  # 20 is now seen
    assert _latest(store).hidden == [2.0] * 4  # two steps of "+1" from zeros: no step skipped, none repeated
    # Fewer than k items when the model and the popularity list offer no more valid ones (nothing is invented);
    # item 3, seen nowhere in this session, is now a valid model item.
    short = _store()
    _feed(operator, short, *(_click(item, T0 + n, n=n) for n, item in enumerate([20, 21, 22, 23, 24, 25, 26])))
    [last] = _feed(operator, short, _click(27, T0 + 100, n=99))
    assert last.items == [3, 7, 11, 12, 13, 28]
    assert last.scores == [9.0, 5.0, 4.25, 3.0, 2.0, 0.0]


# ------------------------------------------------------------------------------------------- determinism
def test_two_runs_are_identical_except_scored_at(holdout: list[Click]) -> None:
    clicks = holdout[:1500]
    runs = []
    for _ in range(2):
        store = _store()
        scored = _process(_opened(), store, clicks)
        results = [msgspec.json.encode(msgspec.structs.replace(s.results[0], scored_at=0)) for s in scored]
        states = {k: RECO_STATE_CODEC.encode(_latest(store, k)) for k in sorted(store.keys())}
        runs.append((results, states))
    assert runs[0] == runs[1]


def test_same_click_and_state_give_the_same_result(operator: RecoOperator) -> None:
    state = SessionState(hidden=[0.1] * 64, seen=[5, 6, 7], last_ts=T0, events=3, model="reco@1")
    outs = []
    for _ in range(3):
        store = _store()
        store.key("s-1").put(state, event_time=T0)
        [r] = _feed(operator, store, _click(8, T0 + 500))
        outs.append((msgspec.structs.replace(r, scored_at=0), RECO_STATE_CODEC.encode(_latest(store))))
    assert outs[0] == outs[1] == outs[2]


def test_hidden_vector_of_another_model_is_not_reused(operator: RecoOperator) -> None:
    stale, fresh = _store(), _store()
    stale.key("s-1").put(
        SessionState(hidden=[1.0] * 3, seen=[5], last_ts=T0, events=2, model="reco@99"), event_time=T0
    )
    _feed(operator, stale, _click(8, T0 + 500))
    _feed(operator, fresh, _click(8, T0 + 500))
    assert _latest(stale).hidden == _latest(fresh).hidden
    assert _latest(stale).seen == [5, 8] and _latest(stale).events == 3


# ------------------------------------------------------------------------------------------- start-up
def test_process_before_open_and_after_close_raises_and_writes_nothing() -> None:
    operator = RecoOperator()
    store = _store()
    with pytest.raises(OperatorError, match="before open"):
        list(operator.process(_click(1, T0), store.key("s-1"), None))
    assert store.key("s-1").get() is None
    operator.open(_committed_context())
    operator.close()
    with pytest.raises(OperatorError, match="before open"):
        list(operator.process(_click(1, T0), store.key("s-1"), None))


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": -3}, {"idle_timeout_ms": 0}, {"idle_timeout_ms": -1}])
def test_bad_configuration_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(OperatorConfigError):
        RecoOperator(**kwargs)


def test_smaller_k_is_served() -> None:
    operator = _opened(k=5)
    [r] = _feed(operator, _store(), _click(42, T0))
    assert len(r.items) == 5 and len(r.scores) == 5


def _register_committed(registry: ModelRegistry, **changes: Any) -> int:
    """Register the committed reco model file again with its manifest, some fields changed (None: removed)."""
    committed = ModelRegistry(DEFAULT_ROOT)
    manifest = {k: v for k, v in committed.manifest("reco", 1).items() if k not in COMPUTED_MANIFEST_KEYS}
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return registry.register("reco", committed.model_path("reco", 1), manifest, promote=True)


INCOMPATIBLE: dict[str, tuple[dict[str, Any], str]] = {
    "catalog_size": ({"catalog_size": 4000}, "input `seen` has shape ['N', 5000], expected [N, 4000]"),
    "hidden_size": ({"hidden_size": 32}, "expected [N, 32]"),
    "k below the operator's": ({"k": 5}, "k is 5, expected an int >= 10"),
    "k missing": ({"k": None}, "k is None"),
    "kind": ({"kind": "risk_mlp"}, "kind is 'risk_mlp'"),
    "no popular_items": ({"popular_items": None}, "popular_items is NoneType"),
    "short popular_items": ({"popular_items": [1, 2, 3]}, "at least 10 distinct ids"),
    "popular_items out of range": ({"popular_items": list(range(4995, 5005))}, "at least 10 distinct ids"),
    "popular_items not ints": ({"popular_items": ["a"] * 10}, "expected a list of item ids"),
}


@pytest.mark.parametrize("case", list(INCOMPATIBLE), ids=list(INCOMPATIBLE))
def test_incompatible_manifest_is_refused_and_not_kept_loaded(case: str, tmp_path: Path) -> None:
    changes, message = INCOMPATIBLE[case]
    registry = ModelRegistry(tmp_path / "registry")
    _register_committed(registry)
    version = _register_committed(registry, **changes)
    operator = RecoOperator()
    operator.open(OperatorContext(registry=registry, model_ref="reco@1"))  # the compatible copy opens
    with pytest.raises(OperatorError) as info:
        operator.open(OperatorContext(registry=registry, model_ref=f"reco@{version}"))
    assert f"reco@{version}" in str(info.value) and message in str(info.value)
    with pytest.raises(OperatorError, match="before open"):
        operator.model  # noqa: B018


def test_larger_k_than_the_model_computes_is_refused() -> None:
    with pytest.raises(OperatorError, match=r"k is 10, expected an int >= 20"):
        _opened(k=20)


def test_another_kind_of_model_is_refused() -> None:
    ctx = _committed_context()
    ctx.model_ref = "risk@1"
    with pytest.raises(OperatorError) as info:
        RecoOperator().open(ctx)
    text = str(info.value)
    assert "risk@1" in text and "kind is 'risk_mlp'" in text and "inputs are ['features']" in text


def test_committed_popular_items_are_the_training_streams_most_popular() -> None:
    manifest = ModelRegistry(DEFAULT_ROOT).manifest("reco")  # the current one, trained on this generator
    stream = generate_clicks(manifest["training_events"], manifest["training_seed"], catalog_size=5000)
    assert manifest["popular_items"] == most_clicked([int(e["item_id"]) for e in stream], 5000, 100)  # type: ignore[call-overload]


def most_clicked(items: list[int], catalog_size: int, n: int) -> list[int]:
    """The `n` most clicked in-catalogue items, best first, ties by the lower id: counted with a plain Counter
    and a sort, independently of `models.evaluation.popularity_top_k` (which the training code uses)."""
    counts = Counter(i for i in items if 0 <= i < catalog_size)
    return [item for item, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:n]]


# ------------------------------------------------------------------------------------------- quality
def test_hit_rate_is_at_least_twice_the_popularity_baseline(holdout: list[Click], run: list[Scored]) -> None:
    """HR@10 of the operator's answers vs a popularity baseline, over every click whose session goes on with an
    item not seen yet in the session. The baseline ranks items by their frequency in this very stream (in-sample,
    so optimistic) and, like the operator, skips the session's items."""
    counts_order = popularity_top_k(np.array([c.item_id for c in holdout], dtype=np.int64), 5000, k=400)
    by_session: dict[str, list[Scored]] = defaultdict(list)
    for s in run:
        by_session[s.click.session_id].append(s)
    tops, baseline, targets = [], [], []
    for steps in by_session.values():
        seen: set[int] = set()
        for s, nxt in itertools.pairwise(steps):
            seen.add(s.click.item_id)
            if nxt.click.item_id in seen:
                continue
            tops.append(s.results[0].items)
            baseline.append([int(i) for i in counts_order if int(i) not in seen][:10])
            targets.append(nxt.click.item_id)
    assert len(targets) > 3000
    hr_model = hr_at_k(np.array(tops), np.array(targets), 10)
    hr_popular = hr_at_k(np.array(baseline), np.array(targets), 10)
    assert hr_popular > 0.0
    assert hr_model >= 2.0 * hr_popular, (hr_model, hr_popular)
