"""One micro-batch of one input partition through the pipeline's operator: the outputs to publish.

The same step as every runtime: validated decode (a rejection is a dead letter), the key's versioned state, the
operator (a failure is a dead letter), results encoded by the pipeline definition; plus, for the partition's
changelog, one record per state version written (the stored record's bytes, `changelog_format`) and one per side
entry the batch changed (once per key and entry, as the batch left it). The batch's valid events go through the
operator together (`operators.batching.apply_operator_batch`: one model call per batch for risk, one per wave of
distinct sessions for reco), with every outcome identical to one event at a time; `--batch-size 1` turns that off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from operators.batching import BatchItem, apply_operator_batch
from operators.core import Failure
from operators.dead_letter import dead_letter_json
from operators.decoding import Rejection
from pipelines.kafka.changelog_format import side_value, version_value
from pipelines.registry import PipelineDefinition
from state._handle import KeyState
from state.contract import SourceCoordinates
from state.rocks import RocksVersionedStore


class _RecordingKeyState(KeyState[Any]):
    """A key's state that remembers the record its `put` wrote (the changelog publishes those bytes as they are)."""

    __slots__ = ("event_time", "record", "rocks")

    def __init__(self, store: RocksVersionedStore[Any], key: str) -> None:
        super().__init__(store, key)
        self.rocks = store
        self.record: bytes | None = None
        self.event_time = 0

    def put(self, value: Any, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        version = super().put(value, event_time=event_time, source=source)
        self.record = self.rocks.last_record
        self.event_time = event_time
        return version


@dataclass
class BatchOutputs:
    """What one partition's batch produced: (key, value) records per topic, and the next input offset."""

    results: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)
    #: State versions in write order, then tombstones (no value) of the keys a sweep removed.
    changelog: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    next_offset: int | None = None
    duplicates: int = 0
    expired_keys: int = 0
    #: The newest event time of a version the batch wrote (None: it wrote none).
    newest_event_time: int | None = None
    #: Results per decision (results without a `decision` are not counted) and dead letters per reason.
    decisions: dict[str, int] = field(default_factory=dict)
    letter_reasons: dict[str, int] = field(default_factory=dict)


class PartitionScorer:
    """Runs a pipeline's operator over records of one topic (any partition), writing into the given store."""

    def __init__(self, spec: PipelineDefinition, operator: Any, topic: str) -> None:
        self._spec = spec
        self._operator = operator
        self._decoder = spec.decoder()
        self._key_of = spec.key_of
        self._result_key = spec.result_key
        self._encode = spec.encode_result
        self._topic = topic
        self._reasons: dict[str, int] = {}

    def score(
        self, store: RocksVersionedStore[Any], partition: int, records: list[tuple[int, bytes | None]],
        skip_below: int,
    ) -> BatchOutputs:
        """Score `(offset, value)` records of `partition` as one micro-batch, outputs in offset order; offsets
        below `skip_below` are already applied and skipped. Writes go to `store` (inside the caller's write
        batch)."""
        out = BatchOutputs()
        self._reasons = out.letter_reasons
        operator = self._operator
        before, expired_before = operator.duplicates, getattr(operator, "expired_keys", 0)
        slots: list[tuple[int, bytes, Rejection | BatchItem]] = []
        for offset, value in records:
            if offset < skip_below:
                continue
            raw = b"" if value is None else value
            event = self._decoder.decode(raw)
            if isinstance(event, Rejection):
                slots.append((offset, raw, event))
                continue
            key = self._key_of(event)
            source = SourceCoordinates(self._topic, partition, offset)
            slots.append((offset, raw, BatchItem(key, event, _RecordingKeyState(store, key), source)))
        outcomes = iter(apply_operator_batch(operator, [e for _, _, e in slots if isinstance(e, BatchItem)]))
        for offset, raw, entry in slots:
            out.next_offset = offset + 1
            if isinstance(entry, Rejection):
                out.dead_letters.append(self._letter(entry.reason, entry.error, raw, partition, offset))
                continue
            outcome = next(outcomes)
            if isinstance(outcome, Failure):
                out.dead_letters.append(self._letter(outcome.reason, outcome.error, raw, partition, offset))
                continue
            decisions = out.decisions
            for result in outcome:
                out.results.append((self._result_key(result).encode(), self._encode(result)))
                decision = getattr(result, "decision", None)
                if decision is not None:
                    decisions[decision] = decisions.get(decision, 0) + 1
            written = cast(_RecordingKeyState, entry.state)
            if outcome and written.record is not None:
                out.changelog.append((entry.key.encode(), version_value(written.record)))
                if out.newest_event_time is None or written.event_time > out.newest_event_time:
                    out.newest_event_time = written.event_time
        for key, name, value, inline in store.pending_sides():  # once per entry the batch changed
            out.changelog.append((key.encode(), side_value(name, value, inline=inline)))
        out.duplicates = operator.duplicates - before
        out.expired_keys = getattr(operator, "expired_keys", 0) - expired_before
        return out

    def _letter(self, reason: str, error: str, raw: bytes, partition: int, offset: int) -> bytes:
        self._reasons[reason] = self._reasons.get(reason, 0) + 1
        return dead_letter_json(self._spec.name, reason, error, raw, topic=self._topic, partition=partition,
                                offset=offset)
