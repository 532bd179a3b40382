"""A toy third pipeline, declared only here (no code under pipelines/ knows it): `counter` counts each user's
events. Importing this module registers it; `STREAMSCORE_PIPELINES=tests.toy_pipeline` makes the CLI and the
Flink job's embedded Python import it."""

from __future__ import annotations

from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec

from operators.core import OperatorBase
from operators.dead_letter import Reason
from operators.decoding import EventDecoder
from pipelines.config import PipelineConfigBase
from pipelines.registry import PipelineDefinition, register
from state.codec import Codec, MsgpackCodec
from state.contract import RetentionPolicy, SourceCoordinates, VersionedState

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CountEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event of a user."""

    event_id: Id
    user: Id
    ts: int


class CounterState(msgspec.Struct, kw_only=True):
    """A user's count and latest event ids (so a retry is not counted twice)."""

    count: int = 0
    recent_event_ids: list[str] = msgspec.field(default_factory=list)


class CountResult(msgspec.Struct, frozen=True):
    """The user's count after this event and the state version that holds it."""

    event_id: str
    user: str
    count: int
    state_version: int
    ts: int


class CounterOperator(OperatorBase):
    """Counts events per user; a retried event id (among the last 8) counts nothing and returns nothing."""

    def process(
        self, event: CountEvent, state: VersionedState[CounterState], source: SourceCoordinates | None
    ) -> list[CountResult]:
        """Add one to the user's count."""
        latest = state.get()
        previous = latest.value if latest is not None else CounterState()
        if self.is_retry(event.event_id, previous.recent_event_ids):
            return []
        count = previous.count + 1
        version = state.put(
            CounterState(count=count, recent_event_ids=[*previous.recent_event_ids, event.event_id][-8:]),
            event_time=event.ts, source=source,
        )
        return [CountResult(event.event_id, event.user, count, version, event.ts)]


class CounterConfig(PipelineConfigBase, frozen=True, tag="counter"):
    """The counter pipeline's config: topics and state only."""


def counter_decoder() -> EventDecoder[CountEvent]:
    """Raw JSON -> `CountEvent` or a rejection (`bad_id` for an empty user or event id)."""
    return EventDecoder(CountEvent, constraint_reasons={"event_id": Reason.BAD_ID, "user": Reason.BAD_ID})


def _codec() -> Codec[Any]:
    return MsgpackCodec(CounterState)


def generate(n: int, seed: int) -> list[dict[str, object]]:
    """`n` events of 7 users, deterministic for `seed`."""
    return [{"event_id": f"c-{seed}-{i}", "user": f"user-{(i * 5 + seed) % 7}", "ts": 1_767_225_600_000 + i}
            for i in range(n)]


COUNTER = register(PipelineDefinition(
    name="counter",
    key_field="user",
    decoder=counter_decoder,
    key_of=attrgetter("user"),
    config_type=CounterConfig,
    default_config=Path(__file__).with_name("counter.yaml"),
    operator_from_config=lambda config: CounterOperator(),
    state_codec=_codec,
    result_key=attrgetter("user"),
    retention=RetentionPolicy(max_versions=4),
    generate=generate,
))
