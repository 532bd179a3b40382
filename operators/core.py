"""The production step every runtime calls, and the bases operators build on.

- `apply_operator(operator, event, state, source)`: one event through an operator, every failure turned into
  a `Failure` (a dead-letter reason and text), so one bad record never stops a pipeline. The Flink function,
  the offline scorer and the test harness all call it.
- `OperatorBase`: the whole `operators.contract.Operator` surface with no-op defaults (open, close, no models
  to refresh, no duplicates), for operators that need no models.
- `BatchOperator`: an operator whose one primitive is `process_batch(items)` (events of many keys at once, as
  every runtime hands them over); its `process` is a batch of one, so the two paths cannot drift.
- `ModelServingOperator`: the open / refresh / close life cycle of operators that serve registry models
  through a `ModelSelector` (default model, routes, pinning, hot-swap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from models.exceptions import ModelError
from models.handle import ModelHandle
from operators.contract import Operator, OperatorContext
from operators.dead_letter import Reason
from operators.exceptions import OperatorError
from operators.remote.backend import BackendConfig
from operators.routing import ModelSelector, ModelSwap, Route, ServedModel, check_routes
from state.contract import SourceCoordinates, VersionedState


class Failure(msgspec.Struct, frozen=True):
    """Why `apply_operator` produced no results: a dead-letter reason code and the error text."""

    reason: Reason
    error: str


class BatchItem(NamedTuple):
    """One event of a micro-batch: its state key, the decoded event, the key's state handle, its source."""

    key: str
    event: Any
    state: VersionedState[Any]
    source: SourceCoordinates | None


class ItemFailed(OperatorError):
    """What `BatchOperator.process` raises when its batch of one made the event a dead letter: `failure` holds
    the reason and text (`apply_operator` turns it back into that same `Failure`)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error)
        self.failure = failure


def apply_operator(
    operator: Operator[Any, Any, Any], event: Any, state: VersionedState[Any], source: SourceCoordinates | None
) -> list[Any] | Failure:
    """Every result of `operator.process(event, state, source)`, or the `Failure` that stopped it.

    A `ModelError` is `model_error`; any other exception is `operator_error` (the record becomes a dead letter
    and the stream goes on: one bad record never stops a pipeline). Used by every runtime.
    """
    try:
        return list(operator.process(event, state, source))
    except Exception as exc:
        return failure_of(exc)


def failure_of(exc: Exception) -> Failure:
    """The dead-letter `Failure` for an exception an operator raised: `model_error` for a `ModelError`,
    `operator_error` for anything else (an `ItemFailed` keeps the failure it carries)."""
    if isinstance(exc, ItemFailed):
        return exc.failure
    if isinstance(exc, ModelError):
        return Failure(Reason.MODEL_ERROR, f"{type(exc).__name__}: {exc}")
    return Failure(Reason.OPERATOR_ERROR, f"{type(exc).__name__}: {exc}")


class OperatorBase:
    """Defaults for the runtime-facing part of the operator contract: nothing to open or close, no models to
    refresh; `duplicates` counts events dropped as retries (subclasses increment it)."""

    def __init__(self, ttl_ms: int | None = None) -> None:
        #: Events dropped as retries of an event id the key already saw (a metric the runtimes export).
        self.duplicates = 0
        #: Keys found expired (idle for more than `ttl_ms` of event time) and restarted cold.
        self.expired_keys = 0
        #: How long a key's state lives without an event, in event time (None: forever).
        self.ttl_ms = ttl_ms

    def is_expired(self, newest_event_time: int, ts: int) -> bool:
        """Whether a key whose newest version has `newest_event_time` is expired for an event at `ts`: more than
        `ttl_ms` of event time passed. An expired key restarts exactly as a new key (counted in
        `expired_keys`): the operator forgets its state before writing, so its versions start again at 1 - the
        same state a sweep that removed the idle key would leave (`pipelines.runtimes.expiry`)."""
        if self.ttl_ms is not None and ts - newest_event_time > self.ttl_ms:
            self.expired_keys += 1
            return True
        return False

    def open(self, ctx: OperatorContext) -> None:
        """Nothing to load."""

    def refresh_models(self) -> list[ModelSwap]:
        """No models: nothing to swap."""
        return []

    def remote_metrics(self) -> dict[str, dict[str, Any]]:
        """No remote model backends: no metrics."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


class BatchOperator(OperatorBase):
    """An operator written once, over batches: subclasses implement `process_batch(items)` (see
    `operators.batching`: every item's outcome is its results or the `Failure` that made it a dead letter,
    items of one key in batch order, each written through the item's own state handle).

    `process(event, state, source)` is `process_batch` of that one event: its results, or `ItemFailed` (an
    `OperatorError` carrying the dead letter's `Failure`) when the batch made it a dead letter.
    """

    def process_batch(self, items: Sequence[BatchItem]) -> list[list[Any] | Failure]:
        """Every item's outcome, in order (see the class docstring)."""
        raise NotImplementedError

    def process(self, event: Any, state: VersionedState[Any], source: SourceCoordinates | None) -> list[Any]:
        """The results of `event` on its key's `state` (a batch of one; `ItemFailed` for a dead letter)."""
        outcome = self.process_batch((BatchItem("", event, state, source),))[0]
        if isinstance(outcome, Failure):
            raise ItemFailed(outcome)
        return outcome


class ModelServingOperator(BatchOperator):
    """An operator that serves registry models: the default `model` reference, `routes` to other models for
    matching events of `event_type`, a pin from `OperatorContext.model_ref`, and hot-swap between events.

    Subclasses implement `accept(model)` (check that a loaded model fits, prepare per-model helpers; raise
    `OperatorError` to refuse it) and `forget_models()` (drop those helpers); they call `require_open()`
    before using a model. `backends` are the model servers routes may name (`operators.remote`).
    """

    def __init__(self, model: str, routes: Sequence[Route], event_type: type[Any],
                 backends: Mapping[str, BackendConfig] | None = None) -> None:
        super().__init__()
        check_routes(routes, event_type)
        self._selector = ModelSelector(model, routes, accept=self.accept, backends=backends)
        self._open = False

    def accept(self, model: ServedModel) -> None:
        """Check that `model` fits this operator and prepare what serving it needs (`OperatorError` if not)."""
        raise NotImplementedError

    def forget_models(self) -> None:
        """Drop what `accept` prepared."""

    def require_open(self) -> None:
        """`OperatorError` unless `open` has loaded the models."""
        if not self._open:
            raise OperatorError(f"{type(self).__name__}.process called before open(): no model is loaded")

    @property
    def model(self) -> ModelHandle:
        """The default model (after `open`); routes may serve some events with others."""
        self.require_open()
        default = self._selector.loaded[self._selector.default]
        assert isinstance(default, ModelHandle)  # the default is a registry reference, loaded in-process
        return default

    def remote_metrics(self) -> dict[str, dict[str, Any]]:
        """Per remote model, by `backend/name@version`: requests, errors, timeouts, rejections, fallback and
        dead-letter rows, latency p50/p99 (ms), breaker state and openings (empty without remote routes). For the
        runtimes to export."""
        return {name: model.state() for name, model in self._selector.remote.items()}

    def open(self, ctx: OperatorContext) -> None:
        """Load the default and routed models (or only `ctx.model_ref` when it pins one), each checked by
        `accept`; on any failure nothing stays loaded."""
        self.close()
        try:
            self._selector.open(ctx.registry, ctx.model_ref)
        except BaseException:
            self.close()
            raise
        self._open = True

    def refresh_models(self) -> list[ModelSwap]:
        """Swap in promoted versions of unpinned models (between events); see `ModelSelector.refresh`."""
        return self._selector.refresh()

    def close(self) -> None:
        """Drop the model sessions."""
        self._open = False
        self._selector.close()
        self.forget_models()
