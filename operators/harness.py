"""An in-process runtime for operator tests: a source log, the operator on a memory store, an exactly-once sink,
and crash semantics (`checkpoint`, `abort`, `resume`) that mirror a Flink job with a transactional Kafka sink.

Records go through the same steps as in the streaming job: validated decode (a rejection becomes a dead letter),
the operator on the key's versioned state via `apply_operator` (an operator or model failure becomes a dead
letter, the stream goes on), results encoded as JSON. Outputs are *pending* until `checkpoint()` commits them
together with a snapshot of the state and the source position. `abort()` is a crash: the operator is dropped
without `close`, and the state and pending outputs since the last checkpoint are lost. `resume()` builds a new
operator, restores the last checkpoint's state and re-reads the source from its position, so a test can
assert that a crash loses and duplicates nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

from operators.contract import Operator, OperatorContext
from operators.core import Failure, apply_operator
from operators.dead_letter import DeadLetter, dead_letter
from operators.decoding import EventDecoder, Rejection
from state.codec import Codec
from state.contract import RetentionPolicy, SourceCoordinates
from state.memory import MemoryVersionedStore

E = TypeVar("E", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)


def process_record(
    operator: Operator[E, Any, Any],
    decoder: EventDecoder[E],
    key_of: Callable[[E], str],
    store: MemoryVersionedStore[Any],
    raw: bytes,
    source: SourceCoordinates,
) -> list[Any] | Rejection | Failure:
    """Decode `raw` and run the operator on its key's state: the results, or why there are none (a
    `Rejection` or a `Failure`, both with `reason` and `error`, i.e. a dead letter). For one-process runtimes
    (the offline scorer, the harness); the Flink job decodes in its own operator, then calls `apply_operator`."""
    decoded = decoder.decode(raw)
    if isinstance(decoded, Rejection):
        return decoded
    return apply_operator(operator, decoded, store.key(key_of(decoded)), source)


class OperatorHarness(Generic[E, R]):
    """Runs one operator in-process over a source log with checkpoint / abort / resume (see the module doc).

    `make_operator()` returns a new, unopened operator (called again on `resume`); `context` is passed to its
    `open`. `committed` and `dead_letters` hold what the sink committed; `pending` what it has not yet.
    """

    def __init__(
        self,
        make_operator: Callable[[], Operator[E, Any, R]],
        decoder: EventDecoder[E],
        key_of: Callable[[E], str],
        codec: Codec[Any],
        *,
        retention: RetentionPolicy | None = None,
        context: OperatorContext | None = None,
        topic: str = "harness",
        pipeline: str = "harness",
    ) -> None:
        self._make_operator = make_operator
        self._decoder = decoder
        self._key_of = key_of
        self._codec = codec
        self._retention = retention or RetentionPolicy()
        self._context = context or OperatorContext()
        self.topic = topic
        self.pipeline = pipeline
        self.source: list[bytes] = []
        self.committed: list[R] = []
        self.dead_letters: list[DeadLetter] = []
        self.pending: list[R | DeadLetter] = []
        self._folder = Path(tempfile.mkdtemp(prefix="streamscore-harness-"))
        self._checkpoints = 0
        self._checkpoint: tuple[Path | None, int] = (None, 0)
        self.store: MemoryVersionedStore[Any] = MemoryVersionedStore(codec, retention=self._retention)
        self.position = 0
        self.operator: Operator[E, Any, R] | None = self._opened()

    def _opened(self) -> Operator[E, Any, R]:
        operator = self._make_operator()
        operator.open(self._context)
        return operator

    # ------------------------------------------------------------------------------------------- source
    def send(self, *records: bytes | msgspec.Struct | dict[str, Any]) -> None:
        """Append records to the source log (events and dicts are JSON-encoded; bytes are sent as they are)."""
        for record in records:
            self.source.append(record if isinstance(record, bytes) else msgspec.json.encode(record))

    # ------------------------------------------------------------------------------------------ running
    def run(self, limit: int | None = None) -> int:
        """Process up to `limit` records from the current position (all available when None); returns how many."""
        operator = self.operator
        if operator is None:
            raise RuntimeError("OperatorHarness.run after abort(): call resume() first")
        end = len(self.source) if limit is None else min(len(self.source), self.position + limit)
        start = self.position
        for offset in range(start, end):
            self.pending.extend(self._process(operator, self.source[offset], offset))
            self.position = offset + 1
        return end - start

    def _process(self, operator: Operator[E, Any, R], raw: bytes, offset: int) -> Iterable[R | DeadLetter]:
        source = SourceCoordinates(self.topic, 0, offset)
        outcome = process_record(operator, self._decoder, self._key_of, self.store, raw, source)
        if isinstance(outcome, Rejection | Failure):
            return [self._letter(outcome.reason, outcome.error, raw, offset)]
        return outcome

    def _letter(self, reason: str, error: str, raw: bytes, offset: int) -> DeadLetter:
        return dead_letter(self.pipeline, reason, error, raw, topic=self.topic, partition=0, offset=offset, at=0)

    # ------------------------------------------------------------------------------------ fault handling
    def checkpoint(self) -> None:
        """Snapshot the state and source position, and commit the pending outputs (one atomic step)."""
        self._checkpoints += 1
        path = self._folder / f"chk-{self._checkpoints}"
        self.store.checkpoint(path)
        previous = self._checkpoint[0]
        self._checkpoint = (path, self.position)
        for output in self.pending:
            (self.dead_letters if isinstance(output, DeadLetter) else self.committed).append(output)  # type: ignore[arg-type]
        self.pending = []
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

    def abort(self) -> None:
        """Crash: drop the operator (no `close`), the state and every output since the last checkpoint."""
        self.operator = None
        self.pending = []
        self.store = MemoryVersionedStore(self._codec, retention=self._retention)  # what was in memory is gone

    def resume(self) -> None:
        """Restart after `abort`: a new operator, the last checkpoint's state, the source from its position."""
        path, position = self._checkpoint
        self.store = (
            MemoryVersionedStore.restore(path, self._codec, retention=self._retention)
            if path is not None
            else MemoryVersionedStore(self._codec, retention=self._retention)
        )
        self.position = position
        self.pending = []
        self.operator = self._opened()

    def close(self) -> None:
        """Close the operator and remove the checkpoint folder."""
        if self.operator is not None:
            self.operator.close()
            self.operator = None
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> OperatorHarness[E, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
