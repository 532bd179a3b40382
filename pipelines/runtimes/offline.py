"""The offline scorer: the same operator chain as the streaming job, over a JSONL file, in one process.

`streamscore score PIPELINE --file events.jsonl [--out results.jsonl]`: each line is decoded and validated
exactly like a Kafka value, keyed by the pipeline's key, run through the operator with an in-memory versioned
store, and encoded exactly like the job encodes results, so for the same events and model the results are
byte-identical to the streaming job's (except `scored_at`). Bad lines become dead letters (to stderr, or
`--dead-letters FILE`), with the line number as the offset.

Lines are scored in batches of `BATCH_SIZE` through `operators.batching.apply_operator_batch`, the step the faust
runtime and the Flink buffered operator take (one model call per batch for risk, one GRU step per wave for reco),
whose contract is the one-at-a-time outcome for every event; `batch_size=1` scores one line at a time (the per-record
path, the golden tests' reference).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

import msgspec

from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.core import Failure
from operators.dead_letter import DeadLetter, dead_letter
from operators.decoding import Rejection
from pipelines.registry import PipelineDefinition, get
from state import MemoryVersionedStore
from state.contract import SourceCoordinates

#: Lines per operator call (the faust runtime's default batch).
BATCH_SIZE = 500


def score_lines(
    pipeline: str, lines: Iterator[bytes], *, source: str, config: Path | None = None, model_ref: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[bytes, DeadLetter | None]]:
    """Yield `(result JSON, None)` per result and `(b"", dead letter)` per bad line, in input order; lines are
    read and scored `batch_size` at a time (1: one at a time)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chosen = get(pipeline)
    settings = chosen.load_config(config)
    operator = chosen.operator_from_config(settings)
    operator.open(OperatorContext(model_ref=model_ref))
    store = MemoryVersionedStore(codec=chosen.state_codec(), retention=settings.state.retention_policy())
    batch = _BatchScorer(chosen, operator, store, source)
    numbered = enumerate(lines)
    try:
        while chunk := list(islice(numbered, batch_size)):
            yield from batch.score(chunk)
    finally:
        operator.close()


class _BatchScorer:
    """Decodes a chunk of numbered lines, runs the decoded ones through the operator as one batch, and yields
    every line's outputs in line order (a bad line's dead letter where the line stood)."""

    def __init__(self, chosen: PipelineDefinition, operator: Any, store: MemoryVersionedStore[Any], source: str):
        self._chosen = chosen
        self._decoder = chosen.decoder()
        self._operator = operator
        self._store = store
        self._source = source

    def score(self, chunk: list[tuple[int, bytes]]) -> Iterator[tuple[bytes, DeadLetter | None]]:
        """The outputs of `chunk`'s lines, in order."""
        chosen, source = self._chosen, self._source
        slots: list[Rejection | BatchItem] = []
        for number, line in chunk:
            event = self._decoder.decode(line)
            if isinstance(event, Rejection):
                slots.append(event)
                continue
            key = chosen.key_of(event)
            slots.append(BatchItem(key, event, self._store.key(key), SourceCoordinates(source, 0, number)))
        outcomes = iter(apply_operator_batch(self._operator, [s for s in slots if isinstance(s, BatchItem)]))
        for (number, line), slot in zip(chunk, slots, strict=True):
            outcome = slot if isinstance(slot, Rejection) else next(outcomes)
            if isinstance(outcome, Rejection | Failure):  # as in the job: a dead letter, and the file goes on
                yield b"", _letter(chosen.name, outcome.reason, outcome.error, line, source, number)
                continue
            for result in outcome:
                yield chosen.encode_result(result), None


def _letter(pipeline: str, reason: str, error: str, raw: bytes, source: str, number: int) -> DeadLetter:
    return dead_letter(pipeline, reason, error, raw, topic=source, partition=0, offset=number, at=0)


def score_file(
    pipeline: str, path: Path, out: IO[str], dead_letters: IO[str], *, config: Path | None = None,
    model_ref: str | None = None,
) -> tuple[int, int]:
    """Score every non-empty line of `path`; returns (results written, dead letters written)."""
    results = letters = 0
    with path.open("rb") as f:
        lines = (line.rstrip(b"\r\n") for line in f if line.strip())
        for encoded, letter in score_lines(pipeline, lines, source=str(path), config=config, model_ref=model_ref):
            if letter is not None:
                dead_letters.write(msgspec.json.encode(letter).decode() + "\n")
                letters += 1
            else:
                out.write(encoded.decode() + "\n")
                results += 1
    return results, letters

