"""The offline scorer: the same operator chain as the streaming job, over a JSONL file, in one process.

`streamscore score PIPELINE --file events.jsonl [--out results.jsonl]`: each line is decoded and validated
exactly like a Kafka value, keyed by the pipeline's key, run through the operator with an in-memory versioned
store, and encoded exactly like the job encodes results, so for the same events and model the results are
byte-identical to the streaming job's (except `scored_at`). Bad lines become dead letters (to stderr, or
`--dead-letters FILE`), with the line number as the offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from operators.contract import OperatorContext
from operators.core import Failure
from operators.dead_letter import DeadLetter, dead_letter
from operators.decoding import Rejection
from operators.harness import process_record
from pipelines.registry import get
from state import MemoryVersionedStore
from state.contract import SourceCoordinates


def score_lines(
    pipeline: str, lines: Iterator[bytes], *, source: str, config: Path | None = None, model_ref: str | None = None
) -> Iterator[tuple[bytes, DeadLetter | None]]:
    """Yield `(result JSON, None)` per result and `(b"", dead letter)` per bad line, in input order."""
    chosen = get(pipeline)
    decoder = chosen.decoder()
    settings = chosen.load_config(config)
    operator = chosen.operator_from_config(settings)
    operator.open(OperatorContext(model_ref=model_ref))
    store = MemoryVersionedStore(codec=chosen.state_codec(), retention=settings.state.retention_policy())
    try:
        for number, line in enumerate(lines):
            coordinates = SourceCoordinates(source, 0, number)
            outcome = process_record(operator, decoder, chosen.key_of, store, line, coordinates)
            if isinstance(outcome, Rejection | Failure):  # as in the job: a dead letter, and the file goes on
                yield b"", _letter(pipeline, outcome.reason, outcome.error, line, source, number)
                continue
            for result in outcome:
                yield chosen.encode_result(result), None
    finally:
        operator.close()


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

