"""Remote model backends against a real model server process (`streamscore models serve`'s MLServer, its own venv).

No broker: events go through the risk operator in batches (`apply_operator_batch`, memory store) as every runtime
hands them over. What is checked: the same model scores the same on the server as in-process; a route to the
larger model names it; a server killed mid-stream makes batches fall back and opens the breaker, its restart
closes it; a server frozen beyond the deadline makes batches fall back within the deadline; a server serving
another file is refused at open.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from models.handle import file_sha256
from models.registry import ModelRegistry
from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.core import Failure
from operators.dead_letter import Reason
from operators.remote.backend import BackendConfig
from operators.remote.exceptions import RemoteModelMismatchError
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import RiskResult, Transaction
from operators.routing import Route
from pipelines.infra.model_server import ModelServer
from pipelines.kafka.publishing import synthetic_records
from state.contract import RetentionPolicy, SourceCoordinates
from state.memory import MemoryVersionedStore

EVERY_EVENT = {"amount": {"at_least": 0.0}}
HIGH_VALUE = {"amount": {"at_least": 200.0}}  # ~4% of the synthetic transactions


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    """One server for the module's tests: the current `risk` and `risk-large` of the test registry."""
    running = ModelServer(["risk", "risk-large"]).start()
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _events(n: int, seed: int = 11) -> list[Transaction]:
    decoder = transaction_decoder()
    events = [decoder.decode(raw) for _, raw in synthetic_records("risk", n, seed)]
    return [e for e in events if isinstance(e, Transaction)]


def _backend(server: ModelServer, protocol: str = "http", **overrides: Any) -> BackendConfig:
    url = server.http_url if protocol == "http" else server.grpc_target
    settings: dict[str, Any] = {"deadline_ms": 5000, **overrides}
    return BackendConfig(url=url, protocol=protocol, **settings)  # type: ignore[arg-type]


def _operator(route_model: str | None = None, when: dict[str, Any] | None = None,
              backend: BackendConfig | None = None) -> RiskOperator:
    routes = [] if route_model is None else [Route(code="remote", when=when or EVERY_EVENT, model=route_model,
                                                   backend="server")]
    operator = RiskOperator(routes=routes, backends={"server": backend} if backend else None)
    operator.open(OperatorContext())
    return operator


def _score(operator: RiskOperator, events: list[Transaction], batch: int = 500) -> list[list[Any] | Failure]:
    """Every event's outcome, through `apply_operator_batch` in batches of `batch` on a fresh memory store."""
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(RISK_STATE_CODEC, retention=RetentionPolicy(max_versions=4))
    outcomes: list[list[Any] | Failure] = []
    for start in range(0, len(events), batch):
        items = [BatchItem(e.account_id, e, store.key(e.account_id), SourceCoordinates("t", 0, start + i))
                 for i, e in enumerate(events[start:start + batch])]
        outcomes += apply_operator_batch(operator, items)
    return outcomes


def _results(outcomes: list[list[Any] | Failure]) -> list[RiskResult]:
    found = []
    for outcome in outcomes:
        assert not isinstance(outcome, Failure), outcome
        found += outcome
    return found


def _without(result: RiskResult, *fields: str) -> bytes:
    return msgspec.json.encode({k: v for k, v in msgspec.structs.asdict(result).items() if k not in fields})


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_same_model_scores_the_same_on_the_server(server: ModelServer, protocol: str) -> None:
    events = _events(20_000)
    local = _results(_score(_operator(), events))
    operator = _operator("risk", backend=_backend(server, protocol))
    remote = _results(_score(operator, events))
    assert len(remote) == len(local) > 19_000
    assert {r.backend for r in remote} == {"server"} and not any(r.fallback for r in remote)
    assert max(abs(a.score - b.score) for a, b in zip(local, remote, strict=True)) <= 1e-6
    for a, b in zip(local, remote, strict=True):
        assert _without(a, "scored_at", "score", "backend") == _without(b, "scored_at", "score", "backend")
        assert b"backend" not in msgspec.json.encode(a)  # in-process results are encoded as before
    metrics = operator.remote_metrics()[f"server/{local[0].model}"]
    assert metrics["requests"] == metrics["successes"] == -(-len(events) // 500)  # one request per batch
    assert metrics["fallback_rows"] == metrics["errors"] == 0 and metrics["breaker"] == "closed"
    operator.close()


def test_a_route_to_the_larger_model_scores_its_segment_with_it(server: ModelServer) -> None:
    events = _events(3_000)
    local = _results(_score(_operator(), events))
    operator = _operator("risk-large", HIGH_VALUE, _backend(server, "grpc"))
    routed = _results(_score(operator, events))
    large = [r for r, e in zip(routed, events, strict=True) if e.amount >= 200.0]
    assert large and all(r.model == "risk-large@1" and r.backend == "server" for r in large)
    small = [r for r, e in zip(routed, events, strict=True) if e.amount < 200.0]
    assert all(r.model == local[0].model and r.backend == "" for r in small)
    by_id = {r.event_id: r for r in local}
    assert sum(by_id[r.event_id].score != r.score for r in large) > len(large) // 2
    operator.close()


def test_a_server_frozen_beyond_the_deadline_falls_back_within_it(server: ModelServer) -> None:
    events = _events(2_000)
    operator = _operator("risk-large", HIGH_VALUE, _backend(server, "http", deadline_ms=300, retries=0))
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        outcomes = _score(operator, events, batch=1_000)
        elapsed = time.monotonic() - started
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    results = _results(outcomes)
    large = [r for r, e in zip(results, events, strict=True) if e.amount >= 200.0]
    assert large and all(r.fallback and r.model == "risk-large@1" and r.backend == "" for r in large)
    metrics = operator.remote_metrics()["server/risk-large@1"]
    # each of the two batches failed once: a timeout, or the socket's own timeout when it fires first, or (on a
    # loaded machine) not sent at all because staging the batch used up its deadline, which counts from its start
    failed = metrics["timeouts"] + metrics["errors"] + metrics["rejected"]
    assert failed == 2 and metrics["fallback_rows"] == len(large), metrics
    assert elapsed < 2 * (0.3 + 2.0)  # each batch waited its deadline, not the frozen server (+ local time, loaded)
    operator.close()


def test_dead_letter_fallback_names_the_reason(server: ModelServer) -> None:
    events = _events(1_000)
    operator = _operator("risk-large", HIGH_VALUE, BackendConfig(url="http://127.0.0.1:9", deadline_ms=200,
                                                                 fallback="dead_letter"))
    outcomes = _score(operator, events)
    failed = [o for o, e in zip(outcomes, events, strict=True) if e.amount >= 200.0]
    assert failed and all(isinstance(o, Failure) and o.reason == Reason.MODEL_UNAVAILABLE for o in failed)
    assert operator.remote_metrics()["server/risk-large@1"]["dead_letter_rows"] == len(failed)
    operator.close()


def test_killed_server_falls_back_opens_the_breaker_and_closes_after_restart(tmp_path: Path) -> None:
    first = ModelServer(["risk-large"]).start()
    first.wait_ready()
    backend = BackendConfig(url=first.http_url, deadline_ms=1000, retries=0, breaker_failures=3,
                            breaker_reset_ms=200)
    operator = _operator("risk-large", EVERY_EVENT, backend)
    events = _events(6_000)
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(RISK_STATE_CODEC)
    seen: list[RiskResult] = []

    def batch(start: int, size: int = 200) -> list[RiskResult]:
        items = [BatchItem(e.account_id, e, store.key(e.account_id), None) for e in events[start:start + size]]
        results = _results(apply_operator_batch(operator, items))
        seen.extend(results)
        return results

    second: ModelServer | None = None
    try:
        assert all(r.backend == "server" for r in batch(0))
        first.kill()
        fell_back = [batch(200 * i) for i in range(1, 6)]
        assert all(r.fallback and r.model == "risk-large@1" for rs in fell_back for r in rs)
        state = operator.remote_metrics()["server/risk-large@1"]
        assert state["breaker"] in ("open", "half_open") and state["breaker_opened"] >= 1
        assert state["errors"] == 3 and state["rejected"] >= 1  # 3 failures opened it; later batches refused
        second = ModelServer(["risk-large"], http_port=first.http_port, grpc_port=first.grpc_port).start()
        second.wait_ready()
        time.sleep(0.3)  # past the breaker's pause: the next batch is its probe
        resumed = batch(1200)
        assert all(r.backend == "server" and not r.fallback for r in resumed)
        assert operator.remote_metrics()["server/risk-large@1"]["breaker"] == "closed"
    finally:
        operator.close()
        first.stop()
        if second is not None:
            second.stop()
    ids = [r.event_id for r in seen]
    assert len(ids) == len(set(ids)) == len(events[:1400])  # every event scored once: nothing lost or doubled
    assert second is not None and not first.log_path.exists() and not second.log_path.exists()  # stop() cleans up


def test_a_server_serving_another_file_is_refused_at_open(tmp_path: Path) -> None:
    registry = ModelRegistry()
    other = tmp_path / "registry"
    shutil.copytree(registry.root / "risk-large", other / "risk-large")
    version = registry.current("risk-large")
    folder = other / "risk-large" / str(version)
    shutil.copyfile(registry.model_path("risk"), folder / "model.onnx")  # a different model under the same name
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"] = file_sha256(folder / "model.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    impostor = ModelServer(["risk-large"], ModelRegistry(other)).start()
    try:
        impostor.wait_ready()
        operator = RiskOperator(routes=[Route(code="remote", when=HIGH_VALUE, model="risk-large", backend="server")],
                                backends={"server": BackendConfig(url=impostor.http_url)})
        with pytest.raises(RemoteModelMismatchError, match="sha256") as refused:
            operator.open(OperatorContext())
        assert manifest["sha256"] in str(refused.value) and "streamscore models serve" in str(refused.value)
    finally:
        impostor.stop()


def test_models_serve_serves_until_interrupted(tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    from pipelines.infra.model_server import free_port

    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "pipelines", "models", "serve", "risk-large", "--port", str(http_port),
               "--grpc-port", str(grpc_port)]
    errors = tmp_path / "stderr.txt"  # a file, not a pipe nobody reads (a full pipe would block the CLI)
    with errors.open("w") as stderr:
        cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert cli.stdout is not None
        first = cli.stdout.readline()  # printed once every model answers ready
        assert first.startswith("serving risk-large@1 over the Open Inference Protocol v2"), first + errors.read_text()
        where = cli.stdout.readline()  # "  HTTP ... gRPC ... log PATH"
        url = f"http://127.0.0.1:{http_port}/v2/models/risk-large/versions/1"
        with urllib.request.urlopen(url, timeout=5) as answer:
            metadata = json.loads(answer.read())
        assert metadata["parameters"]["sha256"] == ModelRegistry().manifest("risk-large", 1)["sha256"]
        cli.send_signal(signal.SIGTERM)
        try:
            code = cli.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log = Path(where.rsplit(" log ", 1)[-1].strip())
            server_log = log.read_text()[-3000:] if log.is_file() else "(no server log)"
            raise AssertionError(f"models serve still running 30 s after SIGTERM; its stderr:\n{errors.read_text()}"
                                 f"\nthe server's log:\n{server_log}") from None
        assert code == 0, errors.read_text()
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=2)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
