"""`streamscore backtest` on the real broker and real PyFlink: the shadow job re-scores history with risk@2
into its own topic with its own state, production's output topic and checkpoints stay untouched, the shadow
results equal the offline scorer with risk@2 pinned, and the report's counts match the two topics."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from pipelines.kafka.clients import consume

from .conftest import Topics, run_bounded, streamscore

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~60 s each: `make test-slow` (make test stays ~20 min)

EVENTS = 3000


def _records(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, int, int]]:
    return [(r.key, r.value, r.partition, r.offset) for r in consume(bootstrap, topic, timeout_s=4)]


def _listing(folder: Path) -> dict[str, tuple[int, float, str]]:
    """Every file under `folder`: size, modification time and sha256 (directories as empty entries)."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        stat = path.stat()
        listing[str(path.relative_to(folder))] = (stat.st_size if path.is_file() else 0, stat.st_mtime, digest)
    return listing


def _line(stdout: str, prefix: str) -> str:
    found = [line.removeprefix(prefix).strip() for line in stdout.splitlines() if line.startswith(prefix)]
    assert found, f"no {prefix!r} line in:\n{stdout}"
    return found[-1]


def _without_scored_at(raw: bytes) -> bytes:
    result = msgspec.json.decode(raw)
    result["scored_at"] = 0
    return msgspec.json.encode(result)


def test_backtest_rescores_into_a_shadow_topic_and_leaves_production_untouched(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    before_first_event = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    streamscore("--bootstrap", bootstrap, "publish", "risk", "--events", str(EVENTS), "--seed", "61",
                "--topic", topics.input)
    production_checkpoints = tmp_path / "checkpoints"
    run_bounded(bootstrap, topics, production_checkpoints)

    production_before = _records(bootstrap, topics.output)
    dlq_before = _records(bootstrap, topics.dlq)
    checkpoints_before = _listing(production_checkpoints)
    assert len(production_before) == EVENTS and checkpoints_before

    report_dir = tmp_path / "report"
    proc = streamscore("--bootstrap", bootstrap, "backtest", "risk", "--model", "risk@2",
                       "--from-timestamp", before_first_event, "--input-topic", topics.input,
                       "--output-topic", topics.output, "--dlq-topic", topics.dlq,
                       "--checkpoint-dir", str(production_checkpoints), "--report-dir", str(report_dir))
    shadow_topic = _line(proc.stdout, "shadow topic:")
    report_json = Path(_line(proc.stdout, "report JSON:"))
    report_png = Path(_line(proc.stdout, "report PNG:"))

    # production untouched: output topic (count and content), dead letters, checkpoint folder
    assert _records(bootstrap, topics.output) == production_before
    assert _records(bootstrap, topics.dlq) == dlq_before
    assert _listing(production_checkpoints) == checkpoints_before

    # the shadow topic: one result per valid event, all from risk@2, each equal to the offline scorer's
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(value + b"\n" for _, value, _, _ in _records(bootstrap, topics.input)))
    offline_file = tmp_path / "offline.jsonl"
    streamscore("score", "risk", "--file", str(events_file), "--model", "risk@2", "--out", str(offline_file),
                "--dead-letters", str(tmp_path / "offline-dlq.jsonl"))
    offline = {msgspec.json.decode(line)["event_id"]: line for line in offline_file.read_bytes().splitlines()}
    assert len(offline) == EVENTS  # every synthetic event is valid
    shadow = [value for _, value, _, _ in _records(bootstrap, shadow_topic)]
    shadow_by_id = {msgspec.json.decode(value)["event_id"]: msgspec.json.decode(value) for value in shadow}
    assert len(shadow) == len(shadow_by_id) == EVENTS
    assert set(shadow_by_id) == set(offline)
    assert {result["model"] for result in shadow_by_id.values()} == {"risk@2"}
    for value in shadow:
        event_id = msgspec.json.decode(value)["event_id"]
        assert _without_scored_at(value) == _without_scored_at(offline[event_id])

    # the report's counts, recomputed from the two topics
    production_by_id = {msgspec.json.decode(v)["event_id"]: msgspec.json.decode(v) for _, v, _, _ in production_before}
    pairs = [(production_by_id[e], shadow_by_id[e]) for e in sorted(set(production_by_id) & set(shadow_by_id))]
    flips = Counter(f"{p['decision']}->{s['decision']}" for p, s in pairs if p["decision"] != s["decision"])
    deltas = [s["score"] - p["score"] for p, s in pairs]
    summary = json.loads(report_json.read_text())
    diff = summary["diff"]
    assert diff["compared"] == len(pairs) == EVENTS
    assert diff["unchanged"] == sum(p["decision"] == s["decision"] for p, s in pairs)
    assert {k: v for k, v in diff["flips"].items() if v} == dict(flips)
    assert diff["missing_in_shadow"] == len(set(production_by_id) - set(shadow_by_id)) == 0
    assert diff["missing_in_production"] == len(set(shadow_by_id) - set(production_by_id)) == 0
    assert diff["score_delta"]["changed"] == sum(d != 0 for d in deltas) > 0
    assert diff["score_delta"]["max_abs"] == pytest.approx(max(abs(d) for d in deltas))
    assert diff["production_models"] == {"risk@3": EVENTS} and diff["shadow_models"] == {"risk@2": EVENTS}
    assert summary["window"]["valid_events"] == EVENTS
    assert summary["backtest"]["shadow_topic"] == shadow_topic
    assert report_png.read_bytes()[:4] == b"\x89PNG"
    assert not _records(bootstrap, shadow_topic + ".dlq")
