"""The job's metrics for Prometheus (`run --metrics-port`): the operator's counters (events_scored,
dead_letters by reason, decisions by kind, duplicate_events) and the model version gauge, scraped from the
running job, match what was sent and what came out."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from models.registry import SHIPPED_ROOT, ModelRegistry
from pipelines.infra.cluster import _port_open
from pipelines.kafka.clients import consume

from . import test_risk_job
from .conftest import Topics, start_job

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

EVENTS = 2_000
#: The operator metrics as Flink's Prometheus reporter names them (a key-value group's key joins the name).
_SAMPLE = re.compile(r"^flink_taskmanager_job_task_operator_(events_scored|reason_dead_letters|decision_decisions|"
                     r"duplicate_events|model_model_version|send_to_scored_ms_(?:p50|p99|max))"
                     r"(\{[^}]*\})? ([0-9.eE+-]+)$", re.MULTILINE)
_SHORT = {"reason_dead_letters": "dead_letters", "decision_decisions": "decisions",
          "model_model_version": "model_version"}


def _scrape(port: int) -> dict[tuple[str, str], float]:
    text = _scrape_text(port)
    samples: dict[tuple[str, str], float] = {}
    for name, labels, value in _SAMPLE.findall(text):
        label = ""
        for key in ("reason", "decision"):
            match = re.search(key + r'="([^"]+)"', labels or "")
            if match:
                label = match.group(1)
        key = (_SHORT.get(name, name), label)
        samples[key] = samples.get(key, 0.0) + float(value)
    return samples


def _scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _dashboard_metric_names() -> set[str]:
    """The metric names the provisioned Grafana dashboard (scripts/deploy/grafana) queries."""
    dashboard = json.loads((ROOT / "scripts/deploy/grafana/dashboards/streamscore.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bflink_[A-Za-z0-9_]+", expr)}


def _free_port() -> int:
    port = 19480
    while _port_open(port):
        port += 1
    return port


def _hammer(port: int, stop: threading.Event, scrapes: list[int]) -> None:
    """Scrape the endpoint every 10 ms until `stop` (a Prometheus that scrapes often, or several at once)."""
    while not stop.wait(0.01):
        try:
            _scrape_text(port)
            scrapes[0] += 1
        except OSError:
            time.sleep(0.05)  # not serving yet


def test_operator_metrics_count_what_the_job_did(bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    """Also scraped every 10 ms while the job scores: reading a gauge must never call into the job's Python
    from the reporter's thread (a PyFlink Python gauge did, and crashed the TaskManager under load)."""
    published_at = time.time()
    test_risk_job._publish(bootstrap, topics, tmp_path, events=EVENTS, seed=17)
    port = _free_port()
    log = tmp_path / "job.log"
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log, "--metrics-port", str(port))
    stop_hammer, scrapes = threading.Event(), [0]
    hammer = threading.Thread(target=_hammer, args=(port, stop_hammer, scrapes), daemon=True)
    hammer.start()
    try:
        deadline = time.monotonic() + 240
        while sum(1 for _ in consume(bootstrap, topics.output, timeout_s=1)) < EVENTS:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        results = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.output, timeout_s=3)]
        letters = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.dlq, timeout_s=3)]
        # the function adds its counts to Flink's counters at most once a second (and on a timer when idle)
        samples = _scrape(port)
        while samples.get(("events_scored", "")) != EVENTS and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = _scrape(port)
        scraped_at = time.time()
        exported = set(re.findall(r"^(flink_[A-Za-z0-9_]+)", _scrape_text(port), re.MULTILINE))
        stop_hammer.set()
        hammer.join(10)
        assert job.poll() is None, log.read_text()[-3000:]
    finally:
        stop_hammer.set()
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            job.kill()

    assert len(results) == EVENTS and scrapes[0] > 20, scrapes
    assert samples[("events_scored", "")] == EVENTS
    assert samples[("duplicate_events", "")] == 10  # the producer retries _publish sends
    by_reason = Counter(letter["reason"] for letter in letters)
    assert by_reason == Counter(reason for _, reason in test_risk_job.MALFORMED)
    assert {label: int(v) for (name, label), v in samples.items() if name == "dead_letters"} == dict(by_reason)
    decisions = Counter(r["decision"] for r in results)
    assert {label: int(v) for (name, label), v in samples.items() if name == "decisions"} == dict(decisions)
    assert samples[("model_version", "")] == float(ModelRegistry(SHIPPED_ROOT).current("risk") or 0)  # the shipped
    # Send→scored latency from the records' Kafka timestamps: the events waited in the topic for the job to start,
    # so every latency lies between 0 and the time since the first send.
    p50, p99, most = (samples[(f"send_to_scored_ms_{q}", "")] for q in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= most <= (scraped_at - published_at) * 1000, (p50, p99, most)
    # Every metric the Grafana dashboard of the deployment files queries is one the job really exports.
    assert _dashboard_metric_names() <= exported, _dashboard_metric_names() - exported


_FAUST_SAMPLE = re.compile(r"^streamscore_([a-z0-9_]+)\{([^}]*)\} ([0-9.eE+-]+)$", re.MULTILINE)


def _scrape_faust(port: int) -> dict[tuple[str, str], float]:
    samples: dict[tuple[str, str], float] = {}
    for name, labels, value in _FAUST_SAMPLE.findall(_scrape_text(port)):
        assert 'runtime="faust"' in labels and 'pipeline="risk"' in labels, labels
        match = re.search(r'(?:reason|decision|model|partition)="([^"]+)"', labels)
        samples[(name, match.group(1) if match else "")] = float(value)
    return samples


def test_the_faust_worker_serves_the_same_metrics_and_its_batches_commits_and_lag(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    published_at = time.time()
    test_risk_job._publish(bootstrap, topics, tmp_path, events=EVENTS, seed=19)
    port = _free_port()
    log = tmp_path / "worker.log"
    worker = start_job(bootstrap, topics, None, log, "--runtime", "faust", "--state-dir", str(tmp_path / "state"),
                       "--metrics-port", str(port), "--batch-size", "300")
    try:
        deadline = time.monotonic() + 180
        while sum(1 for _ in consume(bootstrap, topics.output, timeout_s=1)) < EVENTS:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        results = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.output, timeout_s=3)]
        letters = [msgspec.json.decode(r.value) for r in consume(bootstrap, topics.dlq, timeout_s=3)]
        samples = _scrape_faust(port)  # counted when a batch commits: the outputs above are all committed
        while samples.get(("consumer_lag", "0"), 1) != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = _scrape_faust(port)
        scraped_at = time.time()
        text = _scrape_text(port)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()

    assert len(results) == EVENTS
    assert samples[("events_scored", "")] == EVENTS
    assert samples[("duplicate_events", "")] == 10
    by_reason = Counter(letter["reason"] for letter in letters)
    assert {label: int(v) for (name, label), v in samples.items() if name == "dead_letters"} == dict(by_reason)
    decisions = Counter(r["decision"] for r in results)
    assert {label: int(v) for (name, label), v in samples.items() if name == "decisions"} == dict(decisions)
    assert samples[("model_version", "risk")] == float(ModelRegistry(SHIPPED_ROOT).current("risk") or 0)
    p50, p99, most = (samples[(f"send_to_scored_ms_{q}", "")] for q in ("p50", "p99", "max"))
    assert 0 < p50 <= p99 <= most <= (scraped_at - published_at) * 1000, (p50, p99, most)
    total = EVENTS + 10 + len(test_risk_job.MALFORMED)
    assert samples[("batches", "")] >= total / 300 and 1 <= samples[("commits", "")] <= samples[("batches", "")]
    assert 0 < samples[("batch_size_p50", "")] <= samples[("batch_size_max", "")] <= 300
    assert 0 < samples[("commit_ms_p50", "")] <= samples[("commit_ms_p99", "")]
    assert samples[("consumer_lag", "0")] == 0
    # The dashboard's queries name the worker's series next to the Flink job's.
    dashboard = (ROOT / "scripts/deploy/grafana/dashboards/streamscore.json").read_text()
    queried = set(re.findall(r"\bstreamscore_[a-z0-9_]+", dashboard))
    exported = set(re.findall(r"^(streamscore_[a-z0-9_]+)", text, re.MULTILINE))
    assert queried and queried <= exported, queried - exported
