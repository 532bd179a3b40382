"""A toy third pipeline, declared only here (no code under pipelines/ knows it): `counter` counts each user's
events. Importing this module registers it; `STREAMSCORE_PIPELINES=tests.toy_pipeline` makes the CLI and the
Flink job's embedded Python import it."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec

from operators.core import BatchItem, BatchOperator, Failure, failure_of
from operators.dead_letter import Reason
from operators.decoding import EventDecoder
from operators.idempotency import IdempotencyWindow, KeyIds
from pipelines.config import PipelineConfigBase
from pipelines.registry import PipelineDefinition, register
from state.codec import Codec, MsgpackCodec
from state.contract import VersionedState

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CountEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event of a user."""

    event_id: Id
    user: Id
    ts: int


class CounterState(msgspec.Struct, kw_only=True):
    """A user's count (the ids it saw are its side data: `operators.idempotency`)."""

    count: int = 0


class CountResult(msgspec.Struct, frozen=True):
    """The user's count after this event and the state version that holds it."""

    event_id: str
    user: str
    count: int
    state_version: int
    ts: int


class CounterOperator(BatchOperator):
    """Counts events per user; a re-sent event id (seen by the user within the idempotency window of event time)
    counts nothing and returns nothing. Written once, over batches (`process` is a batch of one)."""

    def __init__(self) -> None:
        super().__init__()
        self.idempotency = IdempotencyWindow()

    def process_batch(self, items: Sequence[BatchItem]) -> list[list[CountResult] | Failure]:
        """Add one to each event's user count, in batch order; each user's ids are stored once per batch."""
        outcomes: list[list[CountResult] | Failure] = []
        key_ids: dict[str, tuple[KeyIds, VersionedState[CounterState]]] = {}
        for item in items:
            event: CountEvent = item.event
            try:
                known = key_ids.get(item.key)
                ids = known[0] if known is not None else self.idempotency.load(item.state)
                if self.idempotency.seen(ids, event.event_id, event.ts):
                    self.duplicates += 1
                    outcomes.append([])
                    continue
                latest = item.state.get()
                count = (latest.value.count if latest is not None else 0) + 1
                version = item.state.put(CounterState(count=count), event_time=event.ts, source=item.source)
            except Exception as exc:
                outcomes.append(failure_of(exc))
                continue
            self.idempotency.remember(ids, event.event_id, event.ts)
            key_ids[item.key] = (ids, item.state)
            outcomes.append([CountResult(event.event_id, event.user, count, version, event.ts)])
        for ids, state in key_ids.values():
            self.idempotency.store(ids, state)
        return outcomes


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
    generate=generate,
))
