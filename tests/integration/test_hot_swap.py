"""Routing and hot-swap on a running job (Flink and faust runtimes): a model promoted in the registry while events
flow takes over at an event boundary, routed events keep their model, and every result equals the offline score of
the model it names."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import pytest
import yaml

from models.registry import DEFAULT_ROOT, REGISTRY_ENV, ModelRegistry
from operators.risk.schemas import RiskResult
from pipelines.kafka.clients import consume, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.risk.config import RISK_CONFIG_PATH
from pipelines.runtimes.offline import score_lines

from .conftest import Topics, start_job, streamscore

pytestmark = pytest.mark.integration

EVENTS = 8000
RATE = 1000  # events per second while the promotion happens
LATAM = ("BR", "MX")


def _publish_paced(bootstrap: str, topic: str, events: list[dict[str, object]], errors: list[BaseException]) -> None:
    try:
        batch = RATE // 10
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            publish_records(bootstrap, topic, [(str(e["account_id"]).encode(), msgspec.json.encode(e)) for e in chunk])
            time.sleep(0.1)
    except BaseException as exc:
        errors.append(exc)


def _count(bootstrap: str, topic: str) -> int:
    return sum(1 for _ in consume(bootstrap, topic, timeout_s=0.5))


def _offline(events: list[dict[str, object]], config: Path, ref: str) -> dict[str, bytes]:
    lines = (msgspec.json.encode(e) for e in events)
    out = {}
    for encoded, letter in score_lines("risk", lines, source="offline", config=config, model_ref=ref):
        assert letter is None
        result = msgspec.json.decode(encoded, type=RiskResult)
        out[result.event_id] = msgspec.json.encode(msgspec.structs.replace(result, scored_at=0))
    return out


@pytest.mark.parametrize("runtime", [
    pytest.param("flink", marks=pytest.mark.slow),  # ~55 s; `make test` swaps on Flink in test_bad_model_swap
    "faust",
])
def test_promotion_under_load_switches_the_default_model_and_routes_hold(
    bootstrap: str, topics: Topics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(DEFAULT_ROOT, registry)
    ModelRegistry(registry).promote("risk", 1)  # risk@1 current, risk@2 a candidate (risk@3 ships as current)
    monkeypatch.setenv(REGISTRY_ENV, str(registry))  # the job, the CLI and the offline scorer all read it
    config = yaml.safe_load(RISK_CONFIG_PATH.read_text(encoding="utf-8"))
    config["routes"] = [{"code": "latam", "when": {"country": list(LATAM)}, "model": "risk@1"}]
    config["model_refresh_seconds"] = 0.5
    config_path = tmp_path / "risk.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    events = synthetic_events("risk", EVENTS, seed=77)
    assert sum(e["country"] in LATAM for e in events) > 50

    log = tmp_path / "job.log"
    extra = ("--runtime", "faust", "--state-dir", str(tmp_path / "state")) if runtime == "faust" else ()
    checkpoints = None if runtime == "faust" else tmp_path / "checkpoints"
    job = start_job(bootstrap, topics, checkpoints, log, "--config", str(config_path), *extra)
    errors: list[BaseException] = []
    publisher = threading.Thread(target=_publish_paced, args=(bootstrap, topics.input, events, errors))
    try:
        publisher.start()
        deadline = time.monotonic() + 240
        while _count(bootstrap, topics.output) < EVENTS // 4:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the job produced too few results before the promotion"
            time.sleep(0.3)
        assert publisher.is_alive(), "the promotion must happen while events are still being published"
        streamscore("models", "promote", "risk@2")  # the registry pointer moves; the job is not touched
        publisher.join(120)
        assert not errors, errors
        while _count(bootstrap, topics.output) < EVENTS:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline + 240, "not every event was scored"
            time.sleep(0.5)
    finally:
        job.terminate()
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            job.kill()

    results = [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topics.output, timeout_s=4)]
    assert len(results) == EVENTS and len({r.event_id for r in results}) == EVENTS
    country = {str(e["event_id"]): e["country"] for e in events}
    routed = [r.model for r in results if country[r.event_id] in LATAM]
    default = [r.model for r in results if country[r.event_id] not in LATAM]
    assert set(routed) == {"risk@1"}  # the route pins its model through the promotion
    # One partition, so output order is processing order: the default switches once, between two events
    # (faust: between two micro-batches).
    switch = default.index("risk@2")
    assert set(default[:switch]) == {"risk@1"} and set(default[switch:]) == {"risk@2"}
    assert switch >= EVENTS // 5 and len(default) - switch >= EVENTS // 10
    pinned = {ref: _offline(events, config_path, ref) for ref in ("risk@1", "risk@2")}
    for result in results:
        unstamped = msgspec.json.encode(msgspec.structs.replace(result, scored_at=0))
        assert unstamped == pinned[result.model][result.event_id]
    assert sum(pinned["risk@1"][k] != pinned["risk@2"][k] for k in pinned["risk@1"]) > EVENTS // 10
