"""`RiskOperator`: one transaction in, one scored result out; per-account state updated incrementally."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from models.exceptions import ModelInputError
from models.handle import BoundModel, ModelHandle
from operators.batching import BatchItem, one_at_a_time
from operators.core import Failure, ModelServingOperator, failure_of
from operators.dead_letter import Reason
from operators.exceptions import OperatorConfigError, OperatorError
from operators.idempotency import DEFAULT_MAX_IDS, DEFAULT_WINDOW_MS, IdempotencyWindow, KeyIds, SeenEventIds
from operators.remote.backend import BackendConfig, RemoteModel
from operators.remote.exceptions import ModelUnavailableError
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, advance
from operators.risk.policy import DEFAULT_TOP_FACTORS, POPULATION_STATS, FeatureStats, RiskThresholds, decide
from operators.risk.rules import DEFAULT_RULES, Rule, RuleSet
from operators.risk.schemas import Decision, RiskResult, Transaction
from operators.rounding import round6
from operators.routing import Route, ServedModel
from state.codec import MsgpackCodec
from state.contract import VersionedState

MODEL_NAME = "risk"
#: The feature row's bytes (native float32, FEATURE_NAMES order).
_ROW = struct.Struct(f"={len(FEATURE_NAMES)}f")


class RiskState(msgspec.Struct, kw_only=True):
    """One account's versioned state: the incremental features, the vector the last score was computed on,
    and the rule state (`recent_ts`: sorted recent event times, bounded; empty unless a `count_in_window`
    rule is configured). Fields added later have defaults, so older versions still decode.

    The event ids seen within the idempotency window are the account's side data (`operators.idempotency`),
    not part of its versions. `seen_ids` (versions written before 2026-12-06) and `recent_event_ids` (before
    the window: the last 32 ids) are what older versions carried: read once, moved into the side data by the
    next write: the versions written since carry `seen_ids` None and no `recent_event_ids`. (Defaults are still
    encoded, so `state get` shows an old version exactly as the code that wrote it did.)"""

    features: RiskFeatureState = msgspec.field(default_factory=RiskFeatureState)
    scored_features: list[float] = msgspec.field(default_factory=list)
    last_event_id: str = ""
    recent_ts: list[int] = msgspec.field(default_factory=list)
    recent_event_ids: list[str] = msgspec.field(default_factory=list)
    seen_ids: SeenEventIds | None = None

RISK_STATE_CODEC: MsgpackCodec[RiskState] = MsgpackCodec(RiskState)


class RiskOperator(ModelServingOperator):
    """Scores transactions: incremental features -> ONNX model -> rules + thresholds -> decision and reasons.

    The result's `state_version` is the version written for this event, whose `scored_features` are
    exactly the vector the model scored. `rules` (a `RuleSet` or rules in order) are evaluated together on
    every event; `top_factors` is how many `model:<feature>` reasons follow a model verdict.
    `model` is the default model reference (`risk` follows the registry's current version, `risk@2` pins
    one) and `routes` send matching transactions to other models (see `operators.routing`);
    `OperatorContext.model_ref` pins one model for every event. State never depends on the model, so a
    swap or a route changes scores and decisions only. A route may name one of `backends` (a model server,
    `operators.remote`): its rows go there in one request per batch, and fall back to the route's model
    in-process (result `fallback: true`) or become `model_unavailable` dead letters when the server fails.
    """

    def __init__(
        self,
        thresholds: RiskThresholds | None = None,
        rules: RuleSet | Iterable[Rule] = DEFAULT_RULES,
        *,
        top_factors: int = DEFAULT_TOP_FACTORS,
        model: str = MODEL_NAME,
        routes: Sequence[Route] = (),
        dedup_window_ms: int = DEFAULT_WINDOW_MS,
        dedup_max_ids: int = DEFAULT_MAX_IDS,
        ttl_ms: int | None = None,
        backends: Mapping[str, BackendConfig] | None = None,
    ) -> None:
        if top_factors < 0:
            raise OperatorConfigError(f"RiskOperator: top_factors must be >= 0, got {top_factors}")
        super().__init__(model, routes, Transaction, backends)
        self.thresholds = thresholds or RiskThresholds()
        self.rules = rules if isinstance(rules, RuleSet) else RuleSet(rules)
        self.top_factors = top_factors
        self.ttl_ms = ttl_ms
        try:
            self.idempotency = IdempotencyWindow(dedup_window_ms, dedup_max_ids)
        except ValueError as exc:
            raise OperatorConfigError(f"RiskOperator: {exc}") from None
        self._stats: dict[str, FeatureStats] = {}
        self._scorers: dict[str, _Scorer] = {}

    @property
    def feature_stats(self) -> FeatureStats:
        """The default model's feature statistics (for the top-factor reasons)."""
        return self._stats[self.model.ref]

    def accept(self, model: ServedModel) -> None:
        """Refuse a model trained on other features or with other inputs/outputs; prepare its scorer."""
        expected = list(FEATURE_NAMES)
        if model.manifest.get("feature_names") != expected:
            raise OperatorError(
                f"model {model.ref} was trained on features {model.manifest.get('feature_names')}, "
                f"but this operator computes {expected}; train a model for this version "
                "(`streamscore models train risk`) or pin a compatible one with --model"
            )
        if model.input_names != ("features",) or "probability" not in model.output_names:
            raise OperatorError(
                f"model {model.ref} has inputs {list(model.input_names)} and outputs {list(model.output_names)}, "
                "but this operator feeds `features` and reads `probability`; register a risk model "
                "(`streamscore models train risk`) or pin a compatible one with --model"
            )
        self._stats[model.ref] = FeatureStats.from_manifest(model.manifest) or POPULATION_STATS
        if isinstance(model, ModelHandle):
            self._scorers[model.ref] = _Scorer(model, self._stats[model.ref])

    def process_batch(self, items: Sequence[BatchItem]) -> list[list[RiskResult] | Failure]:
        """Update each account's state with its transactions, score them and return one `RiskResult` per item
        (in a list), with one model call per model for the whole batch (`process` is a batch of one).

        An `event_id` the account saw within the idempotency window of event time is a retry
        (`operators.idempotency`): it changes nothing, returns no result and is counted in `duplicates`.
        The state never depends on the score, so the batch runs in three passes: features, rules and next
        states in batch order (a key's later items see its earlier ones); one model call per model over all
        the rows; decisions, then the state writes and results in batch order. If a model call or a decision
        fails, nothing has been written and the batch is processed one event at a time instead (so a model
        error is the same dead letter it is unbatched).
        """
        self.require_open()
        started = time.monotonic()  # a remote backend's deadline counts from here
        before, expired_before = self.duplicates, self.expired_keys
        outcomes: list[list[RiskResult] | Failure] = [[] for _ in items]
        staged: list[_Staged] = []
        latest: dict[str, tuple[RiskState, int]] = {}  # a key's state written earlier in the batch, its event time
        key_ids: dict[str, tuple[KeyIds, VersionedState[RiskState]]] = {}  # a key's ids as of the batch so far
        for index, item in enumerate(items):
            event = item.event
            try:
                model = self._selector.for_event(event)
                found = latest.get(item.key)
                if found is None:
                    stored = item.state.get()
                    found = (stored.value, stored.event_time) if stored is not None else None
                fresh = found is None or self.is_expired(found[1], event.ts)
                previous = RiskState() if fresh or found is None else found[0]
                known = None if fresh else key_ids.get(item.key)
                ids = known[0] if known is not None else (
                    self.idempotency.new() if fresh else self._load_ids(item.state, previous)
                )
                if self._is_repeat(event, ids):
                    continue
                features_state, values = advance(previous.features, event)
                packed = _float32_row(values)  # what the model reads: the values rounded to float32
                scored = list(_ROW.unpack(packed))
                outcome = self.rules.evaluate(event, previous.features, previous.recent_ts, packed, scored)
            except Exception as exc:
                outcomes[index] = failure_of(exc)
                continue
            key_ids[item.key] = (ids, item.state)  # only now: a failed item leaves the key's ids as they were
            self.idempotency.remember(ids, event.event_id, event.ts)
            state = RiskState(
                features=features_state, scored_features=scored, last_event_id=event.event_id,
                recent_ts=outcome.recent_ts,
            )
            latest[item.key] = (state, event.ts)
            staged.append(_Staged(index, model, packed, scored, outcome.fired, state, fresh and found is not None))
        try:
            scores = self._score_staged(staged, started)
            decisions = [
                None if isinstance(score, Failure) else
                decide(score.score, s.scored, self.thresholds, s.fired, stats=self._stats[score.model],
                       top_k=self.top_factors)
                for s, score in zip(staged, scores, strict=True)
            ]
        except Exception as exc:
            return one_at_a_time(self, items, exc, before, expired_before)
        for s, score, decided in zip(staged, scores, decisions, strict=True):
            item = items[s.index]
            if s.expired:
                item.state.forget()
            version = item.state.put(s.state, event_time=item.event.ts, source=item.source)
            if isinstance(score, Failure) or decided is None:
                outcomes[s.index] = score if isinstance(score, Failure) else []
                continue
            decision, reasons = decided
            outcomes[s.index] = [_result(item.event, score, decision, reasons, version)]
        for ids, handle in key_ids.values():  # once per key, after its versions (and a forget of an expired key)
            self.idempotency.store(ids, handle)
        return outcomes

    def _score_staged(self, staged: list[_Staged], started: float) -> list[_Score | Failure]:
        """Every staged row's score and what scored it, with one model call per model (a lone row through the
        bound model): the remote models' requests go out first (their deadline counts from `started`, the
        batch's start) and are collected after the local models ran;
        a remote model that fails scores its rows with its fallback, or makes them `model_unavailable` dead
        letters (the state is still written: it never depends on the score)."""
        if len(staged) == 1 and isinstance(staged[0].model, ModelHandle):
            only = staged[0]
            return [_Score(self._scorers[only.model.ref].score_row(only.row), only.model.ref)]
        scores: list[_Score | Failure | None] = [None] * len(staged)
        groups: dict[int, tuple[ServedModel, list[int]]] = {}
        for position, s in enumerate(staged):
            groups.setdefault(id(s.model), (s.model, []))[1].append(position)
        calls = []
        for model, positions in groups.values():
            if isinstance(model, RemoteModel):
                rows = _rows(staged, positions)
                calls.append((model, positions, rows, model.submit({"features": rows}, started)))
        for model, positions in groups.values():
            if isinstance(model, ModelHandle):
                for p, score in zip(positions, self._scorers[model.ref].score_rows(_rows(staged, positions)),
                                    strict=True):
                    scores[p] = _Score(score, model.ref)
        for remote, positions, rows, call in calls:
            try:
                probability = call.result()["probability"].reshape(-1).tolist()
            except ModelUnavailableError as exc:
                fallback = remote.fallback
                if fallback is None:
                    remote.metrics.add(dead_letter_rows=len(positions))
                    for p in positions:
                        scores[p] = Failure(Reason.MODEL_UNAVAILABLE, f"{type(exc).__name__}: {exc}")
                    continue
                remote.metrics.add(fallback_rows=len(positions))
                for p, score in zip(positions, self._scorers[fallback.ref].score_rows(rows), strict=True):
                    scores[p] = _Score(score, fallback.ref, fallback=True)
                continue
            for p, value in zip(positions, probability, strict=True):
                scores[p] = _Score(round6(value), remote.ref, remote.backend)
        return [s for s in scores if s is not None]

    def _load_ids(self, state: VersionedState[RiskState], previous: RiskState) -> KeyIds:
        """The account's remembered ids (with what an older `previous` version carried, moved by the next store)."""
        return self.idempotency.load(state, previous.seen_ids, previous.recent_event_ids, previous.features.last_ts)

    def _is_repeat(self, event: Transaction, ids: KeyIds) -> bool:
        """Whether `event` re-sends one the account saw within the window (then counted in `duplicates`)."""
        if self.idempotency.seen(ids, event.event_id, event.ts):
            self.duplicates += 1
            return True
        return False

    def forget_models(self) -> None:
        """Drop the scorers and feature statistics of the models `accept` prepared."""
        self._stats = {}
        self._scorers = {}


@dataclass(slots=True)
class _Score:
    """A staged row's score: the model version that scored it, the backend it ran on ("": in-process) and
    whether it is a remote backend's fallback."""

    score: float
    model: str
    backend: str = ""
    fallback: bool = False


def _rows(staged: list[_Staged], positions: list[int]) -> np.ndarray:
    """The feature rows of `staged[p]` for `positions`, as one float32 array [n, features]."""
    packed = b"".join([staged[p].row for p in positions])
    return np.frombuffer(packed, dtype=np.float32).reshape(len(positions), len(FEATURE_NAMES))


@dataclass(slots=True)
class _Staged:
    """One batch item past the first pass of `process_batch`: its row, rule verdicts and next state."""

    index: int
    model: ServedModel
    #: The feature row as the model reads it (native float32 bytes, FEATURE_NAMES order).
    row: bytes
    scored: list[float]
    fired: tuple[Rule, ...]
    state: RiskState
    #: The account's state was expired: its state is forgotten before this put (it restarts at version 1).
    expired: bool


def _float32_row(values: list[float]) -> bytes:
    """`values` rounded to float32 (C's double -> float conversion, as numpy's assignment does, at a third of its
    cost), as the row's native bytes; beyond float32's range numpy's conversion (to inf), as it always was."""
    try:
        return _ROW.pack(*values)
    except OverflowError:
        return np.array(values, dtype=np.float32).tobytes()


def _result(event: Transaction, score: _Score, decision: Decision, reasons: list[str], version: int) -> RiskResult:
    return RiskResult(
        event_id=event.event_id,
        account_id=event.account_id,
        score=score.score,
        decision=decision,
        reasons=reasons,
        model=score.model,
        state_version=version,
        ts=event.ts,
        scored_at=int(time.time() * 1000),
        backend=score.backend,
        fallback=score.fallback,
    )


class _Scorer:
    """One risk model on one feature row: write `row` (`features[0]`), `score()` returns the rounded probability;
    `stats` are the model's feature statistics (for the reasons).

    The model runs bound to `features` and its `probability` output (`ModelHandle.bind`); a model that cannot be
    bound (e.g. an unusual output shape) runs through `ModelHandle.run` instead, with the same result.
    """

    __slots__ = ("_bound", "_model", "_probability", "_row_bytes", "features", "row", "stats")

    def __init__(self, model: ModelHandle, stats: FeatureStats) -> None:
        self._model = model
        self.stats = stats
        self.features = np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32)
        self.row = self.features[0]
        self._row_bytes = memoryview(self.features.data).cast("B")
        try:
            self._bound: BoundModel | None = model.bind({"features": self.features}, ["probability"])
            # A memoryview of the bound output reads its element as a Python float directly (no numpy scalar).
            self._probability = self._bound.outputs["probability"].reshape(-1).data
        except ModelInputError:
            self._bound = None

    def score(self) -> float:
        """The model's probability for the row in `features`, rounded to 6 decimals."""
        if self._bound is not None:
            self._bound.run()
            return round6(self._probability[0])
        outputs = self._model.run({"features": self.features})
        return round6(float(outputs["probability"].reshape(-1)[0]))

    def score_row(self, row: bytes) -> float:
        """The model's probability for one feature `row` (native float32 bytes), rounded (the bound model's
        one-row call)."""
        self._row_bytes[:] = row
        return self.score()

    def score_rows(self, rows: np.ndarray) -> list[float]:
        """The model's probability for every row of `rows` (float32, one row per event), rounded, in one call."""
        outputs = self._model.run({"features": rows})
        return [round6(p) for p in outputs["probability"].reshape(-1).tolist()]
