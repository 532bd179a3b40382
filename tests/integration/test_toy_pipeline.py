"""A third pipeline declared only in the test tree (`tests.toy_pipeline`: a per-user counter) runs through
`score`, the harness and a real Flink job without any change under pipelines/ (issue 15): the registry is
the one place a pipeline is declared."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from models.registry import REGISTRY_ENV, ModelRegistry
from operators.harness import OperatorHarness
from pipelines.kafka.clients import consume
from pipelines.registry import get
from tests.integration.conftest import Topics
from tests.toy_pipeline import COUNTER, CountResult, generate
from tests.toy_pipeline.cli import toy_cli
from tests.toy_pipeline.model import registry_with_counter

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _toy_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The committed registry plus the toy's `counter@1`, for the test and every process it starts."""
    root = registry_with_counter(tmp_path / "registry")
    monkeypatch.setenv(REGISTRY_ENV, str(root))
    return root

BAD = [b'{"event_id": "x", "user": ""', b'{"event_id": "x", "user": "", "ts": 1}', b"[1]"]


def _corpus(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    events = generate(300, 3)
    lines = [msgspec.json.encode(e) for e in events]
    lines[150:150] = [lines[149], lines[120]]  # producer retries (within the idempotency window): counted once
    lines[200:200] = BAD
    path = tmp_path / "counter.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, events


def _expected(events: list[dict[str, object]]) -> list[CountResult]:
    """Each user's running count, scored by the registered `counter@1` (run here, one event at a time)."""
    model = ModelRegistry().load("counter")
    counts: dict[str, int] = {}
    out = []
    for e in events:
        user = str(e["user"])
        counts[user] = counts.get(user, 0) + 1
        score = model.run({"count": np.array([[counts[user]]], dtype=np.float32)})["probability"].item()
        out.append(CountResult(str(e["event_id"]), user, counts[user], counts[user], int(str(e["ts"])),
                               round(score, 6), "counter@1"))
    return out


def test_the_registry_knows_the_toy_pipeline_and_the_cli_offers_it() -> None:
    assert get("counter") is COUNTER
    assert "counter" in toy_cli("run", "--help").stdout


def test_toy_pipeline_through_score_the_harness_and_a_flink_job(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    corpus, events = _corpus(tmp_path)
    expected = _expected(events)

    out, letters = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    toy_cli("score", "counter", "--file", str(corpus), "--out", str(out), "--dead-letters", str(letters))
    offline = [msgspec.json.decode(line, type=CountResult) for line in out.read_bytes().splitlines()]
    assert offline == expected
    assert len(letters.read_bytes().splitlines()) == len(BAD)

    with OperatorHarness(lambda: COUNTER.operator(), COUNTER.decoder(), COUNTER.key_of, COUNTER.state_codec(),
                         retention=COUNTER.retention) as harness:
        harness.send(*corpus.read_bytes().splitlines())
        harness.run()
        harness.checkpoint()
        assert list(harness.committed) == expected
        assert len(harness.dead_letters) == len(BAD)

    toy_cli("--bootstrap", bootstrap, "publish", "counter", "--file", str(corpus), "--topic", topics.input)
    toy_cli("--bootstrap", bootstrap, "run", "counter", "--bounded", "--delivery", "at-least-once",
         "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
         "--checkpoint-dir", str(tmp_path / "checkpoints"))
    streamed = [r.value for r in consume(bootstrap, topics.output, timeout_s=5)]
    assert streamed == [msgspec.json.encode(r) for r in expected]  # byte for byte, in order (one partition)
    assert len(list(consume(bootstrap, topics.dlq, timeout_s=3))) == len(BAD)
