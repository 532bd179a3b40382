"""The offline scorer's output for the committed corpora (`tests/corpora/*.jsonl`: synthetic events, producer
retries and malformed lines) is pinned by a sha256 digest: a refactoring must leave every result and dead
letter byte-identical (`scored_at`, the wall clock, aside).

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

from pipelines.runtimes.offline import score_lines

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
DIGESTS = CORPORA / "digests.json"
_SCORED_AT = re.compile(rb',"scored_at":[0-9]+')


def _digest(pipeline: str) -> dict[str, object]:
    path = CORPORA / f"{pipeline}.jsonl"
    lines = [line for line in path.read_bytes().split(b"\n") if line.strip()]
    results, letters = hashlib.sha256(), hashlib.sha256()
    counts = {"results": 0, "dead_letters": 0}
    for encoded, letter in score_lines(pipeline, iter(lines), source=path.name):
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
