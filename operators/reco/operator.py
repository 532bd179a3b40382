"""`RecoOperator`: one click in, one top-k recommendation out; one GRU step per click on the session's state.

The state key is the session (`Click.session_id`). Each click advances the session's recurrent hidden vector by
exactly one step of the registered step model (`reco@<v>`, see `models.training.reco`), O(1) in the length of the
session: the history is never replayed.

Semantics
---------
* **Seen items.** The state keeps the session's distinct in-catalogue items (at most `MAX_SEEN_ITEMS`, the
  least recently clicked one is forgotten first). The model's `seen` mask is built from them for every click
  (the click's own item included), so the graph never ranks them; the operator re-checks the model's answer
  anyway and drops any seen, out-of-catalogue, repeated or non-finite-scored item. Clicks stepped together run
  the same weights without the mask instead (`operators.reco.ranking`), ranking `k` more items than the longest
  seen list: dropping the seen ones leaves the same items and scores.
* **Session start and reset.** A session starts fresh (hidden vector of zeros, no seen items, event count 0)
  on its first click, and again when a click comes more than `idle_timeout_ms` of *event time* after the
  newest click of the session. A hidden vector written by another model version, or of another size, is not
  reused: the step starts from zeros (the seen items are kept).
* **Out-of-order clicks** (`ts` earlier than the newest click of the session) are scored and folded in like any
  other click; they never reset the session, and `last_ts` stays the newest event time.
* **Cold start.** The model's answer is completed from the manifest's `popular_items` (the catalogue's most
  popular items in the training stream, best first), skipping seen items and items already listed, when
  (a) the model yields fewer than `k` valid items, or (b) the click starts a fresh session with an item outside
  the catalogue: the model has then seen nothing it knows (the OOV row on a zero state), so the whole list is
  taken from `popular_items`. The step still runs in case (b) so the hidden vector carries the click. Items
  filled in from `popular_items` have score exactly 0.0 (they have no model score).
* **Determinism.** The same click, state and model give the same result except `scored_at`; scores are the
  model's float32 scores rounded to 6 decimals.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from models.exceptions import ModelInputError
from models.handle import BoundModel, ModelHandle
from operators.batching import BatchItem, one_at_a_time
from operators.core import Failure, ItemFailed, ModelServingOperator, failure_of
from operators.dead_letter import Reason
from operators.exceptions import OperatorConfigError, OperatorError
from operators.idempotency import DEFAULT_MAX_IDS, DEFAULT_WINDOW_MS, IdempotencyWindow, KeyIds, SeenEventIds
from operators.reco.ranking import ranked_step
from operators.reco.schemas import Click, RecoResult
from operators.remote.backend import BackendConfig, RemoteModel
from operators.remote.exceptions import ModelUnavailableError
from operators.rounding import round6
from operators.routing import Route, ServedModel
from state.codec import MsgpackCodec
from state.contract import VersionedState

MODEL_NAME = "reco"
MODEL_KIND = "session_gru_step"
MODEL_INPUTS: tuple[tuple[str, str], ...] = (("item", "int64"), ("hidden", "float32"), ("seen", "float32"))
MODEL_OUTPUTS: tuple[tuple[str, str], ...] = (
    ("new_hidden", "float32"),
    ("top_items", "int64"),
    ("top_scores", "float32"),
)
MAX_SEEN_ITEMS = 200
DEFAULT_K = 10
DEFAULT_IDLE_TIMEOUT_MS = 30 * 60 * 1000
POPULARITY_SCORE = 0.0  # the score reported for an item filled in from the popularity list


class SessionState(msgspec.Struct, kw_only=True):
    """One session's versioned state: everything the next click needs, nothing of the history itself.

    `hidden`: the GRU hidden vector after the session's last click (float32 values; empty means zeros).
    `seen`: the session's distinct in-catalogue items, least recently clicked first, at most `MAX_SEEN_ITEMS`.
    `last_ts`: the newest event time of the session. `events`: clicks since the session (re)started.
    `model`: the model ("reco@<v>") that computed `hidden`.

    The event ids of the idempotency window (kept across resets, so a producer retry is not applied twice) are
    the session's side data (`operators.idempotency`), not part of its versions. `seen_ids` (versions written
    before 2026-12-06) and `recent_event_ids` (before the window: the last 32) are what older versions carried:
    read once, moved into the side data by the next write (versions written since carry `seen_ids` None).
    """

    hidden: list[float] = msgspec.field(default_factory=list)
    seen: list[int] = msgspec.field(default_factory=list)
    last_ts: int = 0
    events: int = 0
    model: str = ""
    recent_event_ids: list[str] = msgspec.field(default_factory=list)
    seen_ids: SeenEventIds | None = None


RECO_STATE_CODEC: MsgpackCodec[SessionState] = MsgpackCodec(SessionState)


def remember(seen: Sequence[int], item: int, catalog_size: int, limit: int = MAX_SEEN_ITEMS) -> list[int]:
    """A copy of `seen` with `item` as the most recent entry (moved there if present), bounded to `limit` items.

    Items outside `[0, catalog_size)` are not remembered: the model can never recommend them.
    """
    out = list(seen)
    if not 0 <= item < catalog_size:
        return out
    if item in out:
        out.remove(item)
    out.append(item)
    if len(out) > limit:
        del out[: len(out) - limit]
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _io_problems(
    where: str, declared: Any, expected: tuple[tuple[str, str], ...], widths: dict[str, int | None]
) -> list[str]:
    """What is wrong with the manifest's `inputs`/`outputs` list (names, dtypes, second dimension)."""
    if not isinstance(declared, list) or not all(isinstance(d, dict) for d in declared):
        return [f"manifest `{where}` must be a list of {{name, dtype, shape}}, got {declared!r}"]
    names = [d.get("name") for d in declared]
    wanted = [name for name, _ in expected]
    if sorted(map(str, names)) != sorted(wanted):
        return [f"{where} are {names}, expected {wanted}"]
    problems = []
    by_name = {d["name"]: d for d in declared}
    for name, dtype in expected:
        spec = by_name[name]
        if spec.get("dtype") != dtype:
            problems.append(f"{where[:-1]} `{name}` has dtype {spec.get('dtype')!r}, expected {dtype!r}")
        width = widths.get(name)
        shape = spec.get("shape")
        if width is not None and (not isinstance(shape, list) or len(shape) != 2 or shape[1] != width):
            problems.append(f"{where[:-1]} `{name}` has shape {shape!r}, expected [N, {width}]")
    return problems


def manifest_problems(model: ServedModel, k: int) -> list[str]:
    """Why `model` cannot serve a `RecoOperator(k=k)`; empty when it can."""
    manifest = model.manifest
    problems: list[str] = []
    if manifest.get("kind") != MODEL_KIND:
        problems.append(f"kind is {manifest.get('kind')!r}, expected {MODEL_KIND!r}")
    catalog = _int(manifest.get("catalog_size"))
    hidden = _int(manifest.get("hidden_size"))
    model_k = _int(manifest.get("k"))
    if catalog is None or catalog < 1:
        problems.append(f"catalog_size is {manifest.get('catalog_size')!r}, expected an int >= 1")
        catalog = None
    if hidden is None or hidden < 1:
        problems.append(f"hidden_size is {manifest.get('hidden_size')!r}, expected an int >= 1")
        hidden = None
    if model_k is None or model_k < k:
        problems.append(f"k is {manifest.get('k')!r}, expected an int >= {k} (the operator's k)")
        model_k = None
    problems += _io_problems(
        "inputs", manifest.get("inputs"), MODEL_INPUTS, {"hidden": hidden, "seen": catalog}
    )
    problems += _io_problems(
        "outputs",
        manifest.get("outputs"),
        MODEL_OUTPUTS,
        {"new_hidden": hidden, "top_items": model_k, "top_scores": model_k},
    )
    if set(model.input_names) != {n for n, _ in MODEL_INPUTS}:
        problems.append(f"the ONNX file's inputs are {list(model.input_names)}")
    if set(model.output_names) != {n for n, _ in MODEL_OUTPUTS}:
        problems.append(f"the ONNX file's outputs are {list(model.output_names)}")
    popular = manifest.get("popular_items")
    if not isinstance(popular, list) or any(_int(p) is None for p in popular):
        problems.append(f"popular_items is {type(popular).__name__}, expected a list of item ids")
    else:
        valid = {p for p in popular if catalog is None or 0 <= p < catalog}
        if len(valid) != len(popular) or len(valid) < k:
            problems.append(
                f"popular_items must hold at least {k} distinct ids in [0, catalog_size), "
                f"got {len(popular)} entries with {len(valid)} distinct valid ids"
            )
    return problems


@dataclass(frozen=True)
class _ModelFacts:
    """What the operator reads from a model's manifest once (sizes, the popularity list) and its `_Stepper`."""

    catalog: int
    hidden_size: int
    popular: tuple[int, ...]
    stepper: _Stepper


class RecoOperator(ModelServingOperator):
    """Recommends the next items of a session: one ONNX GRU step per click, top-k without the session's items.

    See the module docstring for seen items, session reset, out-of-order clicks and cold start. `model` is
    the default model reference (`reco` follows the registry's current version) and `routes` send matching
    clicks to other models (`operators.routing`); a session whose hidden vector came from another model
    continues from zeros with its seen items kept; a route naming one of `backends` steps its sessions on that
    model server (the hidden vector sent, the next one received; see `accept`). A retried `event_id` (seen by
    the session within the idempotency window of event time, `dedup_window_ms`) changes nothing, returns no
    result and is counted in `duplicates`.
    """

    def __init__(
        self,
        k: int = DEFAULT_K,
        idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS,
        *,
        model: str = MODEL_NAME,
        routes: Sequence[Route] = (),
        dedup_window_ms: int = DEFAULT_WINDOW_MS,
        dedup_max_ids: int = DEFAULT_MAX_IDS,
        ttl_ms: int | None = None,
        backends: Mapping[str, BackendConfig] | None = None,
    ) -> None:
        if _int(k) is None or k < 1:
            raise OperatorConfigError(f"RecoOperator: k must be an int >= 1, got {k!r}")
        if _int(idle_timeout_ms) is None or idle_timeout_ms < 1:
            raise OperatorConfigError(
                f"RecoOperator: idle_timeout_ms must be an int >= 1 (event-time ms), got {idle_timeout_ms!r}"
            )
        super().__init__(model, routes, Click, backends)
        self.k = k
        self.idle_timeout_ms = idle_timeout_ms
        self.ttl_ms = ttl_ms
        try:
            self.idempotency = IdempotencyWindow(dedup_window_ms, dedup_max_ids)
        except ValueError as exc:
            raise OperatorConfigError(f"RecoOperator: {exc}") from None
        self._facts: dict[str, _ModelFacts] = {}

    def accept(self, model: ServedModel) -> None:
        """Refuse a model whose manifest does not fit this operator (every mismatch listed); prepare its step.

        A remote model (a route's `backend`) is the same registry version as the route's model in-process,
        accepted first: it shares that model's facts, and its step sends the hidden vector, the item and the
        seen-item mask to the server and receives the next hidden vector with the top items and scores. With
        `fallback: dead_letter` a click the server could not step is a `model_unavailable` dead letter and its
        session's state is not written (the next hidden vector depends on the model)."""
        problems = manifest_problems(model, self.k)
        if problems:
            raise OperatorError(
                f"model {model.ref} cannot serve RecoOperator(k={self.k}): " + "; ".join(problems) + ". "
                "Train a session model with `streamscore models train reco` or pin a compatible one with --model"
            )
        if isinstance(model, RemoteModel):
            return
        catalog = int(model.manifest["catalog_size"])
        hidden_size = int(model.manifest["hidden_size"])
        self._facts[model.ref] = _ModelFacts(
            catalog=catalog,
            hidden_size=hidden_size,
            popular=tuple(int(p) for p in model.manifest["popular_items"]),
            stepper=_Stepper(model, catalog, hidden_size, self.k),
        )

    def process_batch(self, items: Sequence[BatchItem]) -> list[list[RecoResult] | Failure]:
        """Advance each session's state by its clicks (one model step each), write them, and return one
        `RecoResult` per item (in a list; a retried click returns none), with one model call per model and
        *wave* (see `operators.batching`; `process` is a batch of one).

        A session's next click needs the hidden vector its previous click produced, so the batch runs in waves:
        wave w holds the w-th click of every session in the batch, and each wave is one model call per model
        over all its sessions. The states stay in memory until every wave has run, then are written in batch
        order; if a model call fails, nothing has been written and the batch is processed one click at a time
        instead (so a model error is the same dead letter it is unbatched).
        """
        self.require_open()
        started = time.monotonic()  # a remote backend's deadline counts from here, for all the batch's waves
        before, expired_before = self.duplicates, self.expired_keys
        outcomes: list[list[RecoResult] | Failure] = [[] for _ in items]
        latest: dict[str, tuple[SessionState, int]] = {}
        key_ids: dict[str, tuple[KeyIds, VersionedState[SessionState]]] = {}  # a key's ids as of the batch so far
        written: list[tuple[int, SessionState, RecoResult, bool]] = []
        try:
            for wave in _waves(items):
                staged = self._stage_wave(items, wave, latest, key_ids, outcomes)
                for s, step in zip(staged, self._step_staged(staged, started), strict=True):
                    written.append(self._finish(items[s.index], s, step, latest))
        except Exception as exc:
            return one_at_a_time(self, items, exc, before, expired_before)
        for index, state, result, expired in sorted(written, key=lambda w: w[0]):
            item = items[index]
            if expired:
                item.state.forget()
            version = item.state.put(state, event_time=item.event.ts, source=item.source)
            outcomes[index] = [msgspec.structs.replace(result, state_version=version)]
        for ids, handle in key_ids.values():  # once per key, after its versions (and a forget of an expired key)
            self.idempotency.store(ids, handle)
        return outcomes

    def _stage_wave(
        self, items: Sequence[BatchItem], wave: list[int], latest: dict[str, tuple[SessionState, int]],
        key_ids: dict[str, tuple[KeyIds, VersionedState[SessionState]]], outcomes: list[list[RecoResult] | Failure],
    ) -> list[_StagedClick]:
        """The model inputs of one wave's clicks (retries dropped; a failing click gets its dead letter); each
        staged click's id is remembered in `key_ids` (so the session's later clicks in the batch see it)."""
        staged = []
        for index in wave:
            item = items[index]
            event: Click = item.event
            try:
                model = self._selector.for_event(event)
                facts = self._facts[model.ref]
                found = latest.get(item.key)
                if found is None:
                    stored = item.state.get()
                    found = (stored.value, stored.event_time) if stored is not None else None
                expired = found is not None and self.is_expired(found[1], event.ts)
                previous = found[0] if found is not None and not expired else None
                known = None if previous is None else key_ids.get(item.key)
                ids = known[0] if known is not None else (
                    self.idempotency.new() if previous is None else self._load_ids(item.state, previous)
                )
                if self._is_retry(event, ids):
                    continue
                fresh = previous is None or previous.events == 0 or event.ts - previous.last_ts > self.idle_timeout_ms
                if fresh or previous is None:
                    hidden: list[float] | None = None
                    seen: list[int] = []
                    events, last_ts = 0, event.ts
                else:
                    same = previous.model == model.ref and len(previous.hidden) == facts.hidden_size
                    hidden = previous.hidden if same else None
                    seen, events, last_ts = previous.seen, previous.events, max(previous.last_ts, event.ts)
                seen = remember(seen, event.item_id, facts.catalog)
            except Exception as exc:
                outcomes[index] = failure_of(exc)
                continue
            key_ids[item.key] = (ids, item.state)  # only now: a failed item leaves the key's ids as they were
            self.idempotency.remember(ids, event.event_id, event.ts)
            staged.append(_StagedClick(index, model.ref, model, event.item_id, hidden, seen, events, last_ts, fresh,
                                       expired))
        return staged

    def _step_staged(self, staged: list[_StagedClick], started: float) -> list[_Step]:
        """Every staged click's model step, with one model call per model (a lone in-process click through the
        bound step). Remote models' requests go out first (their deadline counts from `started`, the batch's
        start: a wave sent after it passed falls back at once) and are collected after the in-process steps ran; a
        remote model that fails steps its clicks with its fallback (the same version in-process), or raises
        `ModelUnavailableError` without one (`fallback: dead_letter`)."""
        if len(staged) == 1 and isinstance(staged[0].served, ModelHandle):
            only = staged[0]
            stepper = self._facts[only.model].stepper
            if only.hidden is None:
                stepper.zero_hidden()
            else:
                stepper.load_hidden(only.hidden, True)
            return [_Step(*stepper.step(only.item, only.seen))]
        steps: list[_Step | None] = [None] * len(staged)
        groups: dict[int, tuple[ServedModel, list[int]]] = {}
        for position, s in enumerate(staged):
            groups.setdefault(id(s.served), (s.served, []))[1].append(position)
        calls = []
        for model, positions in groups.values():
            if isinstance(model, RemoteModel):
                clicks = [staged[p] for p in positions]
                facts = self._facts[model.ref]
                inputs = _step_inputs(clicks, facts.hidden_size, facts.catalog)
                calls.append((model, positions, clicks, model.submit(inputs, started)))
        for model, positions in groups.values():
            if isinstance(model, ModelHandle):
                for p, step in zip(positions, self._step_local(model.ref, [staged[p] for p in positions]),
                                   strict=True):
                    steps[p] = _Step(*step)
        for remote, positions, clicks, call in calls:
            try:
                remote_steps = [_Step(*step, backend=remote.backend) for step in _step_outputs(call.result(),
                                                                                               len(clicks))]
            except ModelUnavailableError as exc:
                if remote.fallback is None:  # the batch is retried click by click: each one is a dead letter
                    if len(staged) == 1:
                        remote.metrics.add(dead_letter_rows=1)
                    raise ItemFailed(Failure(Reason.MODEL_UNAVAILABLE, f"{type(exc).__name__}: {exc}")) from exc
                remote.metrics.add(fallback_rows=len(clicks))
                remote_steps = [_Step(*step, fallback=True) for step in self._step_local(remote.ref, clicks)]
            for p, remote_step in zip(positions, remote_steps, strict=True):
                steps[p] = remote_step
        return [s for s in steps if s is not None]

    def _step_local(self, ref: str, clicks: list[_StagedClick]) -> list[tuple[list[float], list[int], list[float]]]:
        return self._facts[ref].stepper.step_many([c.item for c in clicks], [c.hidden for c in clicks],
                                                  [c.seen for c in clicks])

    def _finish(
        self, item: BatchItem, s: _StagedClick, step: _Step, latest: dict[str, tuple[SessionState, int]],
    ) -> tuple[int, SessionState, RecoResult, bool]:
        """The next state and the result (without its state version) of one stepped click."""
        event: Click = item.event
        facts = self._facts[s.model]
        cold = s.fresh and not 0 <= event.item_id < facts.catalog
        items, scores = self._top_k(facts, event.item_id, s.seen, [] if cold else step.top_items, step.top_scores)
        state = SessionState(
            hidden=step.new_hidden,
            seen=s.seen,
            last_ts=s.last_ts,
            events=s.events + 1,
            model=s.model,
        )
        latest[item.key] = (state, event.ts)
        result = _result(event, items, scores, s.model, 0)
        if step.backend or step.fallback:
            result = msgspec.structs.replace(result, backend=step.backend, fallback=step.fallback)
        return s.index, state, result, s.expired

    def _load_ids(self, state: VersionedState[SessionState], previous: SessionState) -> KeyIds:
        """The session's remembered ids (with what an older `previous` version carried, moved by the next store)."""
        return self.idempotency.load(state, previous.seen_ids, previous.recent_event_ids, previous.last_ts)

    def _is_retry(self, event: Click, ids: KeyIds) -> bool:
        """Whether `event` re-sends one the session saw within the window (then counted in `duplicates`)."""
        if self.idempotency.seen(ids, event.event_id, event.ts):
            self.duplicates += 1
            return True
        return False

    def _top_k(
        self, facts: _ModelFacts, item: int, seen: list[int], top_items: list[int], top_scores: list[float]
    ) -> tuple[list[int], list[float]]:
        """The first k valid model items, completed from the popularity list (see the module docstring)."""
        excluded = set(seen)
        excluded.add(item)
        items: list[int] = []
        scores: list[float] = []
        k = self.k
        catalog = facts.catalog
        for candidate, score in zip(top_items, top_scores, strict=False):
            if len(items) == k:
                break
            if 0 <= candidate < catalog and candidate not in excluded and math.isfinite(score):
                excluded.add(candidate)
                items.append(candidate)
                scores.append(round6(score))
        for candidate in facts.popular:
            if len(items) == k:
                break
            if candidate not in excluded:
                excluded.add(candidate)
                items.append(candidate)
                scores.append(POPULARITY_SCORE)
        return items, scores

    def forget_models(self) -> None:
        """Drop the model steps `accept` prepared."""
        self._facts = {}


@dataclass(slots=True)
class _StagedClick:
    """One click of a wave, ready for the model: where it came from, its step's inputs, and its next state's
    fields (`hidden` None: start from zeros)."""

    index: int
    model: str
    #: The model object that steps it (a remote one, or the in-process `model`).
    served: ServedModel
    item: int
    hidden: list[float] | None
    seen: list[int]
    events: int
    last_ts: int
    fresh: bool
    #: The session's state was expired: it is forgotten before this click's put (it restarts at version 1).
    expired: bool


@dataclass(slots=True)
class _Step:
    """One click's model step: the next hidden vector, the model's top items and scores, and what computed it
    (`backend` a model server; `fallback` the route's model in-process after that server failed)."""

    new_hidden: list[float]
    top_items: list[int]
    top_scores: list[float]
    backend: str = ""
    fallback: bool = False


def _step_inputs(clicks: Sequence[_StagedClick], hidden_size: int, catalog: int) -> dict[str, np.ndarray]:
    """The step model's inputs for `clicks`, one row each: item, hidden vector (zeros if None), seen-item mask."""
    n = len(clicks)
    hidden_rows = np.zeros((n, hidden_size), dtype=np.float32)
    mask = np.zeros((n, catalog), dtype=np.float32)
    for j, click in enumerate(clicks):
        if click.hidden is not None:
            hidden_rows[j] = click.hidden
        mask[j, click.seen] = 1.0
    return {"item": np.array([c.item for c in clicks], dtype=np.int64), "hidden": hidden_rows, "seen": mask}


def _step_outputs(out: dict[str, np.ndarray], n: int) -> list[tuple[list[float], list[int], list[float]]]:
    """(new hidden vector, top items, top scores) per row of a step model's outputs."""
    new_hidden = out["new_hidden"].reshape(n, -1).tolist()
    top_items = out["top_items"].reshape(n, -1).tolist()
    top_scores = out["top_scores"].reshape(n, -1).tolist()
    return list(zip(new_hidden, top_items, top_scores, strict=True))


def _waves(items: Sequence[BatchItem]) -> list[list[int]]:
    """Batch positions grouped in waves: wave w holds the w-th item of every key, each wave in batch order."""
    waves: list[list[int]] = []
    count: dict[str, int] = {}
    for index, item in enumerate(items):
        wave = count.get(item.key, 0)
        count[item.key] = wave + 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
    return waves


def _result(event: Click, items: list[int], scores: list[float], model: str, version: int) -> RecoResult:
    return RecoResult(
        event_id=event.event_id,
        user_id=event.user_id,
        session_id=event.session_id,
        items=items,
        scores=scores,
        model=model,
        state_version=version,
        ts=event.ts,
        scored_at=int(time.time() * 1000),
    )


class _Stepper:
    """One session-model step on preallocated inputs: the hidden vector, the item, and the seen-item mask.

    The model runs bound to them and to its outputs (`ModelHandle.bind`); a model that cannot be bound runs
    through `ModelHandle.run` on the same arrays instead, with the same result. Several clicks at once
    (`step_many`) run the same weights without the seen mask (`operators.reco.ranking`), asking for `k` more items
    than the longest seen list: the operator's `_top_k` drops seen items either way, so the results are the same.
    One per model, per operator.
    """

    def __init__(self, model: ModelHandle, catalog: int, hidden_size: int, k: int) -> None:
        self._model = model
        self._hidden_size = hidden_size
        self._catalog = catalog
        self._k = k
        self._ranked = ranked_step(model)
        self.item = np.zeros((1,), dtype=np.int64)
        self.hidden = np.zeros((1, hidden_size), dtype=np.float32)
        self.seen = np.zeros((1, catalog), dtype=np.float32)
        self._hidden_row = self.hidden[0]
        self._hidden_bytes = memoryview(self.hidden.data).cast("B")
        self._pack_hidden = struct.Struct(f"={hidden_size}f").pack_into
        self._seen_row = self.seen[0]
        self._inputs: dict[str, np.ndarray] = {"item": self.item, "hidden": self.hidden, "seen": self.seen}
        self._bound: BoundModel | None
        try:
            self._bound = model.bind(self._inputs, [name for name, _ in MODEL_OUTPUTS])
        except ModelInputError:
            self._bound = None

    def zero_hidden(self) -> None:
        """Start from a zero hidden vector (a fresh session)."""
        self._hidden_row.fill(0.0)

    def load_hidden(self, hidden: list[float], same_model: bool) -> None:
        """Continue from `hidden`, or from zeros when another model (or a vector of another size) wrote it."""
        if same_model and len(hidden) == self._hidden_size:
            try:  # the C cast to float32 numpy does, without numpy's per-call type discovery
                self._pack_hidden(self._hidden_bytes, 0, *hidden)
            except OverflowError:  # beyond float32's range: numpy stores inf where struct refuses
                self._hidden_row[:] = hidden
        else:
            self._hidden_row.fill(0.0)

    def step(self, item: int, seen: list[int]) -> tuple[list[float], list[int], list[float]]:
        """One model step for `item` with `seen` masked: (new hidden vector, the model's top items, their scores)."""
        self.item[0] = item
        mask = self._seen_row
        mask.put(seen, 1.0)
        try:
            if self._bound is not None:
                self._bound.run()
                out = self._bound.outputs
            else:
                out = self._model.run(self._inputs)
        finally:
            mask.put(seen, 0.0)
        return (
            out["new_hidden"].reshape(-1).tolist(),
            out["top_items"].reshape(-1).tolist(),
            out["top_scores"].reshape(-1).tolist(),
        )

    def step_many(
        self, items: list[int], hidden: list[list[float] | None], seen: list[list[int]]
    ) -> list[tuple[list[float], list[int], list[float]]]:
        """`step` for many sessions in one model call: row j steps `items[j]` from `hidden[j]` (None: zeros)
        with `seen[j]` masked; one (new hidden vector, top items, top scores) per row."""
        n = len(items)
        hidden_rows = np.zeros((n, self._hidden_size), dtype=np.float32)
        for j, vector in enumerate(hidden):
            if vector is not None:
                hidden_rows[j] = vector
        item_array = np.array(items, dtype=np.int64)
        if self._ranked is not None:  # `seen` holds the clicked item too (when in the catalogue)
            top_n = min(self._catalog, self._k + 1 + max(len(row) for row in seen))
            ranked = self._ranked.run(item_array, hidden_rows, top_n)
            return _step_outputs(ranked, n)
        mask = np.zeros((n, self.seen.shape[1]), dtype=np.float32)
        for j, row in enumerate(seen):
            mask[j, row] = 1.0
        return _step_outputs(self._model.run({"item": item_array, "hidden": hidden_rows, "seen": mask}), n)
