"""State bounds from the pipeline config in a real Flink job. Idempotency by event time: a hot account (1,500
events inside the window) re-sending its first event is applied once; a re-send just outside the configured
window (1 h here) is applied as a new event. TTL (1 h here): an account idle for 2 h of event time restarts cold.
The job's results are exactly the offline scorer's for the same config (and differ from it without the TTL)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pipelines.kafka.clients import consume, publish_records
from pipelines.risk.config import RISK_CONFIG_PATH
from pipelines.runtimes.offline import score_lines

from .conftest import Topics, run_bounded
from .test_cluster_jobs import _unstamped

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
MINUTE = 60_000


def _tx(i: int, ts: int, account: str = "acct-hot") -> bytes:
    return msgspec.json.encode({
        "event_id": f"{account}-{i}" if account != "acct-hot" else f"hot-{i}", "account_id": account,
        "amount": 10.0 + i % 50, "currency": "EUR",
        "merchant_id": f"m-{i % 40}", "country": "DE", "device_id": "d-1", "ts": ts,
    })


def test_a_hot_key_drops_resends_inside_the_window_and_applies_one_outside(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    config = tmp_path / "risk.yaml"
    settings = RISK_CONFIG_PATH.read_text().replace("dedup_window_hours: 24", "dedup_window_hours: 1")
    config.write_text(settings + "  ttl_hours: 1\n")
    without_ttl = tmp_path / "no-ttl.yaml"
    without_ttl.write_text(settings)
    lines = [_tx(i, T0 + i * 2_000) for i in range(1_500)]  # 50 minutes of event time
    lines.append(lines[0])  # re-sent 50 min (and 1,499 events) later: inside the window, dropped
    lines.append(_tx(1_500, T0 + 61 * MINUTE))
    lines.append(lines[1])  # its ts is now 1 h 58 s older than the account's newest: applied as a new event
    idle = [_tx(i, T0 + i * MINUTE, "acct-idle") for i in range(5)]
    idle.append(_tx(5, T0 + 4 * MINUTE + 2 * 60 * MINUTE, "acct-idle"))  # 2 h idle: past the TTL, starts cold
    lines += idle
    publish_records(bootstrap, topics.input, [(msgspec.json.decode(line)["account_id"].encode(), line)
                                              for line in lines])
    run_bounded(bootstrap, topics, tmp_path / "checkpoints", "--config", str(config))

    results = [r.value for r in consume(bootstrap, topics.output, timeout_s=3)]
    ids = [msgspec.json.decode(v)["event_id"] for v in results]
    assert len(ids) == 1_508 and ids.count("hot-0") == 1 and ids.count("hot-1") == 2
    expected = [_unstamped(v) for v, letter in score_lines("risk", iter(lines), source="t", config=config)
                if letter is None]
    assert sorted(_unstamped(v) for v in results) == sorted(expected)
    hot = [msgspec.json.decode(v) for v in results if msgspec.json.decode(v)["account_id"] == "acct-hot"]
    assert hot[-1]["state_version"] == 1_502
    cold = next(msgspec.json.decode(v) for v in results if msgspec.json.decode(v)["event_id"] == "acct-idle-5")
    assert cold["state_version"] == 1  # a new lifetime: expired state is forgotten
    kept = next(msgspec.json.decode(v) for v, _ in score_lines("risk", iter(lines), source="t", config=without_ttl)
                if v and msgspec.json.decode(v)["event_id"] == "acct-idle-5")
    assert kept["score"] != cold["score"]  # with its history (no TTL) the event scores otherwise
