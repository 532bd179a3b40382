"""The offline scorer's output for the committed corpora (`tests/corpora/*.jsonl`: synthetic events, producer
retries and malformed lines) is pinned by a sha256 digest: a refactoring must leave every result and dead
letter byte-identical (`scored_at`, the wall clock, aside), whether the lines are scored in batches (the default) or
one at a time.

After an intended change of behaviour, regenerate with `STREAMSCORE_UPDATE_DIGESTS=1 pytest <this file>` and
say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import msgspec
import pytest

from pipelines.runtimes.offline import BATCH_SIZE, score_lines

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
DIGESTS = CORPORA / "digests.json"
_SCORED_AT = re.compile(rb',"scored_at":[0-9]+')


def _digest(pipeline: str, batch_size: int = BATCH_SIZE) -> dict[str, object]:
    path = CORPORA / f"{pipeline}.jsonl"
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    results, letters = hashlib.sha256(), hashlib.sha256()
    counts = {"results": 0, "dead_letters": 0}
    for encoded, letter in score_lines(pipeline, iter(lines), source=path.name, batch_size=batch_size):
        if letter is not None:
            letters.update(msgspec.json.encode(letter) + b"\n")
            counts["dead_letters"] += 1
        else:
            stripped, replaced = _SCORED_AT.subn(b"", encoded)
            assert replaced == 1, encoded
            results.update(stripped + b"\n")
            counts["results"] += 1
    return counts | {"results_sha256": results.hexdigest(), "dead_letters_sha256": letters.hexdigest()}


@pytest.mark.parametrize("pipeline", ["risk", "reco"])
def test_offline_output_for_the_committed_corpus_is_unchanged(pipeline: str) -> None:
    got = _digest(pipeline)
    pinned = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    if os.environ.get("STREAMSCORE_UPDATE_DIGESTS") == "1":
        DIGESTS.write_text(json.dumps(pinned | {pipeline: got}, indent=2, sort_keys=True) + "\n")
        pinned[pipeline] = got
    assert got["results"] > 1000 and got["dead_letters"] >= 5
    assert got == pinned[pipeline]


@pytest.mark.parametrize("pipeline", ["risk", "reco"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_every_batch_size_gives_the_pinned_output(pipeline: str, batch_size: int) -> None:
    pinned = json.loads(DIGESTS.read_text())[pipeline]
    assert _digest(pipeline, batch_size) == pinned  # one at a time, and batches that split keys' runs and retries


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(score_lines("risk", iter([b"{}"]), source="t", batch_size=0))
