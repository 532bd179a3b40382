"""The engine-agnostic operator contract: `open(ctx)`, `process(event, state, source)`, `close()`.

Operators never import pyflink or faust; a runtime (Flink, faust, the offline scorer, the test harness)
decodes events, hands the operator the versioned state of the event's key, and ships what it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from models.registry import ModelRegistry
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

    def close(self) -> None:
        """Release what `open` acquired."""
        ...
