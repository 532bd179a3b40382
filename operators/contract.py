"""The engine-agnostic operator contract: `open(ctx)`, `process(event, state, source)`, `refresh_models()`,
`duplicates`, `close()` - everything a runtime calls.

Operators never import pyflink or faust; a runtime (Flink, faust, the offline scorer, the test harness)
decodes events, hands the operator the versioned state of the event's key through `operators.core.apply_operator`,
ships what it returns, calls `refresh_models()` between events (hot-swap) and exports `duplicates` and
`remote_metrics()` as metrics.
`operators.core` has the bases that implement the common parts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from models.registry import ModelRegistry
from operators.routing import ModelSwap
from state.contract import SourceCoordinates, VersionedState

E = TypeVar("E", contravariant=True)
R = TypeVar("R", covariant=True)
S = TypeVar("S")


@dataclass
class OperatorContext:
    """What an operator may use at `open`: the model registry and which model version to load (None: current)."""

    registry: ModelRegistry = field(default_factory=ModelRegistry)
    model_ref: str | None = None


class Operator(Protocol, Generic[E, S, R]):
    """A keyed stateful operator. Deterministic: same (event, state, model version) gives the same results."""

    def open(self, ctx: OperatorContext) -> None:
        """Load models and anything else needed before the first event."""
        ...

    def process(
        self, event: E, state: VersionedState[S], source: SourceCoordinates | None
    ) -> Iterable[R]:
        """Fold `event` into its key's `state` (writing one new version) and return the results to emit."""
        ...

    def refresh_models(self) -> list[ModelSwap]:
        """Between events: swap in newly promoted model versions; one `ModelSwap` per change or refusal."""
        ...

    @property
    def duplicates(self) -> int:
        """Events dropped so far as retries of an event id their key already saw."""
        ...

    def remote_metrics(self) -> dict[str, dict[str, Any]]:
        """Per remote model backend (`operators.remote`): its counters, latency and breaker state (empty when the
        operator scores in-process only). For the runtimes' metric endpoints."""
        ...

    def close(self) -> None:
        """Release what `open` acquired."""
        ...
