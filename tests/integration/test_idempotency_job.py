"""Idempotency by event time in a real Flink job: a hot account (1,500 events inside the window) re-sending its
first event is applied once; a re-send just outside the configured window (1 h here) is applied as a new event;
the job's results are exactly the offline scorer's for the same config."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pipelines.config import RISK_CONFIG_PATH
from pipelines.kafka.clients import consume, publish_records
from pipelines.runtimes.offline import score_lines

from .conftest import Topics, run_bounded
from .test_cluster_jobs import _unstamped

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
MINUTE = 60_000


def _tx(i: int, ts: int) -> bytes:
    return msgspec.json.encode({
        "event_id": f"hot-{i}", "account_id": "acct-hot", "amount": 10.0 + i % 50, "currency": "EUR",
        "merchant_id": f"m-{i % 40}", "country": "DE", "device_id": "d-1", "ts": ts,
    })


def test_a_hot_key_drops_resends_inside_the_window_and_applies_one_outside(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = tmp_path / "risk.yaml"
    config.write_text(RISK_CONFIG_PATH.read_text().replace("dedup_window_hours: 24", "dedup_window_hours: 1"))
    lines = [_tx(i, T0 + i * 2_000) for i in range(1_500)]  # 50 minutes of event time
    lines.append(lines[0])  # re-sent 50 min (and 1,499 events) later: inside the window, dropped
    lines.append(_tx(1_500, T0 + 61 * MINUTE))
    lines.append(lines[1])  # its ts is now 1 h 58 s older than the account's newest: applied as a new event
    publish_records(bootstrap, topics.input, [(b"acct-hot", line) for line in lines])
    run_bounded(bootstrap, topics, tmp_path / "checkpoints", "--config", str(config))

    results = [r.value for r in consume(bootstrap, topics.output, timeout_s=3)]
    ids = [msgspec.json.decode(v)["event_id"] for v in results]
    assert len(ids) == 1_502 and ids.count("hot-0") == 1 and ids.count("hot-1") == 2
    expected = [_unstamped(v) for v, letter in score_lines("risk", iter(lines), source="t", config=config)
                if letter is None]
    assert [_unstamped(v) for v in results] == expected
    assert msgspec.json.decode(results[-1])["state_version"] == 1_502
