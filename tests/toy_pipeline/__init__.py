"""A toy third pipeline, declared only here (no code under pipelines/ knows it): `counter` counts each user's
events and scores, with its registry model (`tests.toy_pipeline.model`), whether the user is a regular. It has
its own closed loop (`tests.toy_pipeline.loop`: labels, dataset, accuracy), so `streamscore loop counter` runs.
Importing this module registers it; `STREAMSCORE_PIPELINES=tests.toy_pipeline` makes the CLI and the Flink
job's embedded Python import it."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any, ClassVar

import msgspec
import numpy as np

from operators.core import BatchItem, Failure, ModelServingOperator, failure_of
from operators.dead_letter import Reason
from operators.decoding import EventDecoder
from operators.exceptions import OperatorError
from operators.idempotency import IdempotencyWindow, KeyIds
from operators.routing import ServedModel
from pipelines.config import ModelPipelineConfig
from pipelines.registry import PipelineDefinition, register
from state.codec import Codec, MsgpackCodec
from state.contract import VersionedState
from tests.toy_pipeline.loop import CounterLoop

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
    """The user's count after this event, the state version that holds it, and how likely the model finds it
    that the user is a regular (`score`, by `model`)."""

    event_id: str
    user: str
    count: int
    state_version: int
    ts: int
    score: float
    model: str


class CounterOperator(ModelServingOperator):
    """Counts events per user and scores each count with the model; a re-sent event id (seen by the user within
    the idempotency window of event time) counts nothing and returns nothing. Written once, over batches
    (`process` is a batch of one), with one model call per batch."""

    def __init__(self, model: str = "counter") -> None:
        super().__init__(model, (), CountEvent)
        self.idempotency = IdempotencyWindow()

    def accept(self, model: ServedModel) -> None:
        """Refuse a model that does not map `count` to `probability`."""
        if model.input_names != ("count",) or "probability" not in model.output_names:
            raise OperatorError(f"model {model.ref} has inputs {list(model.input_names)} and outputs "
                                f"{list(model.output_names)}; the counter feeds `count` and reads `probability`")

    def process_batch(self, items: Sequence[BatchItem]) -> list[list[CountResult] | Failure]:
        """Add one to each event's user count, in batch order, then score every count at once; each user's ids
        are stored once per batch."""
        self.require_open()
        outcomes: list[tuple[CountEvent, int, int] | Failure | None] = []
        key_ids: dict[str, tuple[KeyIds, VersionedState[CounterState]]] = {}
        for item in items:
            event: CountEvent = item.event
            try:
                known = key_ids.get(item.key)
                ids = known[0] if known is not None else self.idempotency.load(item.state)
                if self.idempotency.seen(ids, event.event_id, event.ts):
                    self.duplicates += 1
                    outcomes.append(None)
                    continue
                latest = item.state.get()
                count = (latest.value.count if latest is not None else 0) + 1
                version = item.state.put(CounterState(count=count), event_time=event.ts, source=item.source)
            except Exception as exc:
                outcomes.append(failure_of(exc))
                continue
            self.idempotency.remember(ids, event.event_id, event.ts)
            key_ids[item.key] = (ids, item.state)
            outcomes.append((event, count, version))
        for ids, state in key_ids.values():
            self.idempotency.store(ids, state)
        counted = [o for o in outcomes if isinstance(o, tuple)]
        model = self.model
        scores = model.run({"count": np.array([[c] for _, c, _ in counted], dtype=np.float32).reshape(-1, 1)})
        by_row = iter(scores["probability"].reshape(-1).tolist())
        return [[] if o is None else o if isinstance(o, Failure) else
                [CountResult(o[0].event_id, o[0].user, o[1], o[2], o[0].ts, round(next(by_row), 6), model.ref)]
                for o in outcomes]


class CounterConfig(ModelPipelineConfig, frozen=True, tag="counter"):
    """The counter pipeline's config: topics, state and the model (`counter` or `counter@N`)."""

    MODEL_NAME: ClassVar[str] = "counter"
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = CountEvent


def counter_decoder() -> EventDecoder[CountEvent]:
    """Raw JSON -> `CountEvent` or a rejection (`bad_id` for an empty user or event id)."""
    return EventDecoder(CountEvent, constraint_reasons={"event_id": Reason.BAD_ID, "user": Reason.BAD_ID})


def _codec() -> Codec[Any]:
    return MsgpackCodec(CounterState)


def generate(n: int, seed: int) -> list[dict[str, object]]:
    """`n` events, one a second, deterministic for `seed`: every 200 events 5 new users arrive, and each sends
    40 of those 200 (so any stretch of the stream has newcomers and regulars)."""
    return [{"event_id": f"c-{seed}-{i}", "user": f"user-{seed}-{i % 5 + 5 * (i // 200)}",
             "ts": 1_767_225_600_000 + 1000 * i} for i in range(n)]


COUNTER = register(PipelineDefinition(
    name="counter",
    key_field="user",
    decoder=counter_decoder,
    key_of=attrgetter("user"),
    config_type=CounterConfig,
    default_config=Path(__file__).with_name("counter.yaml"),
    operator_from_config=lambda config: CounterOperator(config.model),
    state_codec=_codec,
    result_key=attrgetter("user"),
    generate=generate,
    loop=CounterLoop(),
))
