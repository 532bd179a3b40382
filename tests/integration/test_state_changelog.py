"""State versions published by the job, materialised outside it, match what each result was scored on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest

from models.registry import ModelRegistry
from operators.risk.schemas import RiskResult
from pipelines.kafka.changelog_format import SIDE_FORMAT, VERSION_FORMAT
from pipelines.kafka.clients import consume, ensure_topics

from .conftest import Topics, run_bounded, streamscore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("operator", [
    "buffered",
    pytest.param("per-record", marks=pytest.mark.slow),  # the default operator runs in `make test`
])
def test_state_get_version_returns_the_features_each_result_was_scored_on(
    bootstrap: str, topics: Topics, tmp_path: Path, operator: str
) -> None:
    changelog = topics.output + ".changelog"
    ensure_topics(bootstrap, [changelog])
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--events", "400", "--seed", "21",
                "--topic", topics.input)
    run_bounded(bootstrap, topics, tmp_path / "checkpoints", "--state-changelog", changelog, "--operator", operator)

    results = [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topics.output, timeout_s=5)]
    assert len(results) == 400
    values = [r.value for r in consume(bootstrap, changelog, timeout_s=5)]
    versions = [v for v in values if v[0] == VERSION_FORMAT]  # binary: the stored records
    assert len(versions) == 400 and all(v[0] in (VERSION_FORMAT, SIDE_FORMAT) for v in values)
    # and the ids side entries: per element that changed them (per-record), or per key and buffer, as the buffer
    # left them (buffered, as the faust runtime's micro-batches)
    keys = {r.account_id for r in results}
    assert len(values) - len(versions) >= (400 if operator == "per-record" else len(keys))
    state_dir = tmp_path / "state"
    synced = streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", changelog,
                         "--state-dir", str(state_dir))
    assert "400 versions applied" in synced.stdout
    again = streamscore("--bootstrap", bootstrap, "state", "sync", "risk", "--changelog-topic", changelog,
                        "--state-dir", str(state_dir))
    assert "0 versions applied, 400 already present" in again.stdout

    model = ModelRegistry().load_ref(results[0].model)
    busiest = max({r.account_id for r in results}, key=lambda a: sum(r.account_id == a for r in results))
    for result in [r for r in results if r.account_id == busiest][:8]:
        out = streamscore("state", "get", "risk", result.account_id, "--version", str(result.state_version),
                          "--state-dir", str(state_dir))
        version = json.loads(out.stdout)
        assert version["version"] == result.state_version
        assert version["event_time"] == result.ts
        assert version["source"]["topic"] == topics.input
        features = np.array([version["value"]["scored_features"]], dtype=np.float32)
        rescored = float(model.run({"features": features})["probability"][0])
        assert rescored == pytest.approx(result.score, abs=1e-6)
        assert version["value"]["last_event_id"] == result.event_id

        as_of = datetime.fromtimestamp(result.ts / 1000, tz=UTC).isoformat()
        by_time = json.loads(streamscore("state", "get", "risk", result.account_id, "--as-of", as_of,
                                         "--state-dir", str(state_dir)).stdout)
        assert by_time["version"] >= result.state_version  # a later version may share the same event time
        assert by_time["event_time"] == result.ts

    history = streamscore("state", "get", "risk", busiest, "--history", "3", "--state-dir", str(state_dir))
    versions = [json.loads(line)["version"] for line in history.stdout.splitlines()]
    newest = max(r.state_version for r in results if r.account_id == busiest)
    assert versions == [newest, newest - 1, newest - 2]
