"""A remote route through the runtimes on the real broker, against a real model server process (MLServer).

The risk config routes every transaction to the current `risk` version served by `streamscore models serve`
(the same file as in-process, so the results must equal the offline scorer's apart from `backend`/`fallback`).
Events go in three phases: the server up (every result `backend: server`), the server SIGKILLed (every result a
fallback to the route's model in-process, the breaker open), the server restarted on the same ports (remote
scoring resumes: the second half of the phase, sent 1.5 s after the first, is scored remotely throughout).
The read_committed output holds exactly one result per event, and the scraped metrics count the fallbacks and
the breaker's opening. Reco through the faust worker: sessions stepped on the server (gRPC) give the in-process
run's results (scores within 1e-6).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import yaml

from models.registry import ModelRegistry
from operators.risk.schemas import RiskResult
from pipelines.infra.model_server import ModelServer
from pipelines.kafka.clients import consume
from pipelines.kafka.publishing import synthetic_events

from . import test_faust_runtime
from .conftest import Topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: Model-server and metrics ports of this module (the shared machine's tests keep to their own ranges).
HTTP_PORT, GRPC_PORT, METRICS_PORT = 20311, 20312, 20313


@pytest.fixture
def server() -> Iterator[ModelServer]:
    """The registry's current `risk`, served over v2 HTTP and gRPC on this module's ports."""
    running = ModelServer(["risk"], http_port=HTTP_PORT, grpc_port=GRPC_PORT).start()
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def remote_config(out: Path, protocol: str = "http") -> Path:
    """The shipped risk YAML with every transaction routed to the current `risk` on this module's server."""
    config = yaml.safe_load((ROOT / "pipelines/risk/risk.yaml").read_text(encoding="utf-8"))
    url = f"http://127.0.0.1:{HTTP_PORT}" if protocol == "http" else f"127.0.0.1:{GRPC_PORT}"
    config["backends"] = {"server": {"url": url, "protocol": protocol, "deadline_ms": 2000, "retries": 0,
                                     "max_in_flight": 2, "breaker_failures": 2, "breaker_reset_ms": 300}}
    version = ModelRegistry().current("risk")
    config["routes"] = [{"code": "remote_all", "when": {"amount": {"at_least": 0.0}}, "model": f"risk@{version}",
                         "backend": "server"}]
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def results(bootstrap: str, topic: str) -> list[RiskResult]:
    """Every committed result of `topic` (read_committed)."""
    return [msgspec.json.decode(r.value, type=RiskResult) for r in consume(bootstrap, topic, timeout_s=3)]


def wait_for(bootstrap: str, topic: str, count: int, job: subprocess.Popen[bytes], log: Path,
             timeout_s: float = 240) -> None:
    """Until `topic` holds `count` committed results (the job must stay up meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while sum(1 for _ in consume(bootstrap, topic, timeout_s=0.5)) < count:
        assert job.poll() is None, f"the job exited early:\n{log.read_text(errors='replace')[-4000:]}"
        assert time.monotonic() < deadline, f"< {count} results after {timeout_s} s:\n" \
            f"{log.read_text(errors='replace')[-4000:]}"
        time.sleep(0.5)


def assert_one_local_equal_result_per_event(got: list[RiskResult], events: list[dict[str, object]]) -> None:
    """One result per event id, each equal to the offline scorer's except `scored_at`, `backend`, `fallback`."""
    counts = Counter(r.event_id for r in got)
    assert len(counts) == len(events) and max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    expected = test_faust_runtime._offline(events)
    for result in got:
        local = msgspec.structs.replace(result, backend="", fallback=False)
        want = msgspec.structs.replace(expected[result.event_id], scored_at=result.scored_at)
        assert msgspec.json.encode(local) == msgspec.json.encode(want)


def scrape_remote(port: int, prefix: str) -> dict[str, float]:
    """The `remote_*` samples of the endpoint, summed per metric name (one remote model here)."""
    with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for name, value in re.findall(rf"^{prefix}(remote_[a-z0-9_]+)\{{[^}}]*\}} ([0-9.eE+-]+)$", text, re.MULTILINE):
        found[name] = found.get(name, 0.0) + float(value)
    return found


def run_three_phases(bootstrap: str, topics: Topics, server: ModelServer, job: subprocess.Popen[bytes],
                     log: Path, phases: tuple[int, int, int], seed: int) -> tuple[list[dict[str, object]],
                                                                                    list[RiskResult]]:
    """Publish the phases' events (server up, killed, restarted), waiting for each phase's results; returns the
    events and the committed results."""
    events = synthetic_events("risk", sum(phases), seed)
    first, second = phases[0], phases[0] + phases[1]
    test_faust_runtime._publish(bootstrap, topics.input, events[:first])
    wait_for(bootstrap, topics.output, first, job, log)
    server.kill()
    test_faust_runtime._publish(bootstrap, topics.input, events[first:second])
    wait_for(bootstrap, topics.output, second, job, log)
    restarted = ModelServer(["risk"], http_port=HTTP_PORT, grpc_port=GRPC_PORT).start()
    server.process = restarted.process  # the fixture stops whichever process runs now
    restarted.wait_ready()
    # The first events after the restart may still fall back (the breaker probes every 300 ms; a gRPC channel
    # reconnects within its backoff); after a pause every event is scored remotely again.
    third = second + phases[2] // 2
    test_faust_runtime._publish(bootstrap, topics.input, events[second:third])
    wait_for(bootstrap, topics.output, third, job, log)
    time.sleep(1.5)
    test_faust_runtime._publish(bootstrap, topics.input, events[third:])
    wait_for(bootstrap, topics.output, len(events), job, log)
    got = results(bootstrap, topics.output)
    by_id = {r.event_id: r for r in got}
    assert all(by_id[str(e["event_id"])].backend == "server" for e in events[:first])
    assert all(by_id[str(e["event_id"])].fallback for e in events[first:second])
    assert all(by_id[str(e["event_id"])].backend == "server" for e in events[third:])
    return events, got


def stop(job: subprocess.Popen[bytes]) -> None:
    """SIGTERM the job's process group, SIGKILL if it does not end."""
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)
    try:
        job.wait(60)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait(10)


@pytest.mark.parametrize(("protocol", "phases"), [
    ("http", (2000, 2000, 1000)),
    pytest.param("grpc", (8000, 8000, 4000), marks=pytest.mark.slow),  # 20k events: `make test-slow`
])
def test_faust_worker_scores_a_remote_route_falls_back_while_the_server_is_down_exactly_once(
    bootstrap: str, topics: Topics, server: ModelServer, tmp_path: Path, protocol: str,
    phases: tuple[int, int, int]
) -> None:
    log = tmp_path / "worker.log"
    config = remote_config(tmp_path / "risk.yaml", protocol)
    job = test_faust_runtime._start(test_faust_runtime._faust_args(
        bootstrap, "risk", topics, tmp_path / "state", "--config", str(config), "--batch-size", "200",
        "--metrics-port", str(METRICS_PORT)), log)
    try:
        events, got = run_three_phases(bootstrap, topics, server, job, log, phases, seed=53)
        metrics = scrape_remote(METRICS_PORT, "streamscore_")
    finally:
        stop(job)
    assert_one_local_equal_result_per_event(got, events)
    assert metrics["remote_fallbacks"] == phases[1] and metrics["remote_dead_letters"] == 0, metrics
    assert metrics["remote_breaker_openings"] >= 1 and metrics["remote_breaker_open"] == 0, metrics
    assert metrics["remote_errors"] + metrics["remote_timeouts"] >= 2, metrics
    assert metrics["remote_successes"] >= (phases[0] + phases[2] // 2) / 200, metrics
    assert metrics["remote_latency_us_p50"] > 0, metrics


#: The remote series as Flink's Prometheus reporter names them (the groups `backend`, `model` join the name).
FLINK_PREFIX = "flink_taskmanager_job_task_operator_backend_model_"


@pytest.mark.slow  # a Flink job through three phases and a server restart: `make test-slow`
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_flink_buffered_job_scores_a_remote_route_falls_back_while_the_server_is_down_exactly_once(
    bootstrap: str, topics: Topics, server: ModelServer, tmp_path: Path, protocol: str
) -> None:
    from .conftest import start_job

    log = tmp_path / "job.log"
    config = remote_config(tmp_path / "risk.yaml", protocol)
    job = start_job(bootstrap, topics, tmp_path / "checkpoints", log, "--config", str(config), "--operator",
                    "buffered", "--metrics-port", str(METRICS_PORT))
    try:
        events, got = run_three_phases(bootstrap, topics, server, job, log, (2000, 2000, 1000), seed=59)
        deadline = time.monotonic() + 30  # the function adds its counts to Flink's at most once a second
        metrics = scrape_remote(METRICS_PORT, FLINK_PREFIX)
        while metrics.get("remote_fallbacks") != 2000 and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = scrape_remote(METRICS_PORT, FLINK_PREFIX)
    finally:
        stop(job)
    assert_one_local_equal_result_per_event(got, events)
    assert metrics["remote_fallbacks"] == 2000 and metrics["remote_dead_letters"] == 0, metrics
    assert metrics["remote_breaker_openings"] >= 1 and metrics["remote_breaker_open"] == 0, metrics
    assert metrics["remote_successes"] >= 2 and metrics["remote_latency_us_p50"] > 0, metrics


def _reco_remote_config(path: Path, url: str, protocol: str) -> None:
    """The shipped reco config with every click's GRU step routed to the server at `url`, written to `path`."""
    config = yaml.safe_load((ROOT / "pipelines/reco/reco.yaml").read_text(encoding="utf-8"))
    config["backends"] = {"server": {"url": url, "protocol": protocol, "deadline_ms": 10_000}}
    config["routes"] = [{"code": "remote_all", "when": {"action": ["view", "click", "cart", "purchase"]},
                         "model": f"reco@{ModelRegistry().current('reco')}", "backend": "server"}]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.slow  # two bounded workers and a second server (64 s on a loaded machine): `make test-slow`
def test_faust_worker_steps_reco_sessions_on_the_server_as_in_process(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    from .conftest import streamscore

    reco = ModelServer(["reco"], http_port=HTTP_PORT + 10, grpc_port=GRPC_PORT + 10).start()
    try:
        reco.wait_ready()
        _reco_remote_config(tmp_path / "reco.yaml", reco.grpc_target, "grpc")
        streamscore("--bootstrap", bootstrap, "publish", "reco", "--events", "1000", "--seed", "61",
                    "--topic", topics.input)
        twin = test_faust_runtime._twin(topics)
        streamscore(*test_faust_runtime._faust_args(bootstrap, "reco", topics, tmp_path / "local", "--bounded",
                                                    "--batch-size", "64"))
        streamscore(*test_faust_runtime._faust_args(bootstrap, "reco", twin, tmp_path / "remote", "--bounded",
                                                    "--batch-size", "64", "--config", str(tmp_path / "reco.yaml")))
    finally:
        reco.stop()
    local = {r["event_id"]: r for r in map(msgspec.json.decode, (m.value for m in consume(bootstrap, topics.output)))}
    remote = [msgspec.json.decode(m.value) for m in consume(bootstrap, twin.output)]
    assert len(remote) == len({r["event_id"] for r in remote}) == len(local) > 900
    for result in remote:
        want = local[result["event_id"]]
        assert result.pop("backend") == "server" and "fallback" not in result
        assert result["items"] == want["items"] and result["state_version"] == want["state_version"]
        assert max(abs(a - b) for a, b in zip(result.pop("scores"), want.pop("scores"), strict=True)) <= 1e-6
        assert {**result, "scored_at": 0} == {**want, "scored_at": 0}


@pytest.mark.slow  # a Flink job and a second server: `make test-slow`
def test_flink_buffered_job_steps_reco_sessions_on_the_server_as_in_process(
    bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    from pipelines.kafka.clients import publish_records
    from pipelines.kafka.publishing import synthetic_records

    from .conftest import streamscore
    from .test_remote_reco import _clicks, _operator, _results, _Run

    reco = ModelServer(["reco"], http_port=HTTP_PORT + 10, grpc_port=GRPC_PORT + 10).start()
    try:
        reco.wait_ready()
        _reco_remote_config(tmp_path / "reco.yaml", reco.http_url, "http")
        publish_records(bootstrap, topics.input, list(synthetic_records("reco", 1000, 67)))
        streamscore("--bootstrap", bootstrap, "run", "reco", "--bounded", "--input-topic", topics.input,
                    "--output-topic", topics.output, "--dlq-topic", topics.dlq, "--operator", "buffered",
                    "--checkpoint-dir", str(tmp_path / "checkpoints"), "--config", str(tmp_path / "reco.yaml"))
    finally:
        reco.stop()
    local = _Run(_operator(None))
    local.batch(_clicks(1000, seed=67))
    want = {r.event_id: r for r in _results(local.outcomes)}
    local.operator.close()
    got = [msgspec.json.decode(m.value) for m in consume(bootstrap, topics.output)]
    assert len(got) == len({r["event_id"] for r in got}) == len(want) > 900
    for result in got:
        expected = want[result["event_id"]]
        assert result["backend"] == "server" and "fallback" not in result
        assert (result["items"], result["state_version"]) == (expected.items, expected.state_version)
        assert max(abs(a - b) for a, b in zip(result["scores"], expected.scores, strict=True)) <= 1e-6
