"""The reco GRU step on a real model server (MLServer, `streamscore models serve reco`): each click's request sends
the session's hidden vector, the item and the seen-item mask (three inputs) and receives the next hidden vector,
the top items and their scores (three outputs). Sessions stepped remotely equal those stepped in-process within
1e-6 (results and the hidden vectors written to state); with the server SIGKILLed the clicks fall back to the
same version in-process and the sessions go on; with `fallback: dead_letter` they are `model_unavailable` dead
letters. No broker: the operator gets batches as the runtimes hand them over (memory store).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from models.registry import ModelRegistry
from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.core import Failure
from operators.dead_letter import Reason
from operators.reco.decoding import click_decoder
from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.reco.schemas import Click, RecoResult
from operators.remote.backend import BackendConfig
from operators.routing import Route
from pipelines.infra.model_server import ModelServer
from pipelines.kafka.publishing import synthetic_records
from state.memory import MemoryVersionedStore

pytestmark = pytest.mark.integration

HTTP_PORT, GRPC_PORT = 20331, 20332
EVERY_CLICK = {"item_id": {"at_least": -1}}


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    """The registry's current `reco` on this module's ports."""
    running = ModelServer(["reco"], http_port=HTTP_PORT, grpc_port=GRPC_PORT).start()
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _clicks(n: int, seed: int = 7) -> list[Click]:
    decoder = click_decoder()
    clicks = [decoder.decode(raw) for _, raw in synthetic_records("reco", n, seed)]
    return [c for c in clicks if isinstance(c, Click)]


def _operator(backend: BackendConfig | None) -> RecoOperator:
    ref = f"reco@{ModelRegistry().current('reco')}"
    routes = [] if backend is None else [Route(code="remote", when=EVERY_CLICK, model=ref, backend="server")]
    operator = RecoOperator(routes=routes, backends=None if backend is None else {"server": backend})
    operator.open(OperatorContext())
    return operator


class _Run:
    """Clicks through one operator in batches on one memory store; outcomes in click order."""

    def __init__(self, operator: RecoOperator) -> None:
        self.operator = operator
        self.store: MemoryVersionedStore[Any] = MemoryVersionedStore(RECO_STATE_CODEC)
        self.outcomes: list[list[RecoResult] | Failure] = []

    def batch(self, clicks: list[Click]) -> list[list[RecoResult] | Failure]:
        items = [BatchItem(c.session_id, c, self.store.key(c.session_id), None) for c in clicks]
        outcomes = apply_operator_batch(self.operator, items)
        self.outcomes += outcomes
        return outcomes

    def hidden(self, session: str) -> list[float]:
        found = self.store.key(session).get()
        assert found is not None
        return list(found.value.hidden)


def _results(outcomes: list[list[RecoResult] | Failure]) -> list[RecoResult]:
    found: list[RecoResult] = []
    for outcome in outcomes:
        assert not isinstance(outcome, Failure), outcome
        found += outcome
    return found


def _assert_close(local: list[RecoResult], remote: list[RecoResult]) -> None:
    assert len(local) == len(remote)
    for a, b in zip(local, remote, strict=True):
        assert (a.event_id, a.items, a.model, a.state_version) == (b.event_id, b.items, b.model, b.state_version)
        assert max((abs(x - y) for x, y in zip(a.scores, b.scores, strict=True)), default=0.0) <= 1e-6


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sessions_stepped_on_the_server_equal_the_in_process_steps(server: ModelServer, protocol: str) -> None:
    clicks = _clicks(1500)
    url = server.http_url if protocol == "http" else server.grpc_target
    local, remote = _Run(_operator(None)), _Run(_operator(BackendConfig(url=url, protocol=protocol,  # type: ignore[arg-type]
                                                                        deadline_ms=10_000)))
    for start in range(0, len(clicks), 64):
        local.batch(clicks[start:start + 64])
        remote.batch(clicks[start:start + 64])
    got = _results(remote.outcomes)
    assert len(got) > 1400 and {r.backend for r in got} == {"server"} and not any(r.fallback for r in got)
    _assert_close(_results(local.outcomes), got)
    for session in {c.session_id for c in clicks}:
        a, b = local.hidden(session), remote.hidden(session)
        assert len(a) == len(b) == 64 and max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-6
    metrics = remote.operator.remote_metrics()
    (only,) = metrics.values()
    assert only["requests"] == only["successes"] >= 1500 / 64 and only["errors"] == 0
    local.operator.close()
    remote.operator.close()


def test_a_killed_server_falls_back_in_process_and_the_sessions_go_on(tmp_path: Any) -> None:
    own = ModelServer(["reco"], http_port=HTTP_PORT + 10, grpc_port=GRPC_PORT + 10).start()
    own.wait_ready()
    clicks = _clicks(600, seed=9)
    local = _Run(_operator(None))
    remote = _Run(_operator(BackendConfig(url=own.http_url, deadline_ms=5000, retries=0, breaker_failures=2)))
    try:
        for start in range(0, 300, 100):
            local.batch(clicks[start:start + 100])
            remote.batch(clicks[start:start + 100])
        own.kill()
        for start in range(300, 600, 100):
            local.batch(clicks[start:start + 100])
            remote.batch(clicks[start:start + 100])
    finally:
        own.stop()
    got = _results(remote.outcomes)
    ids = [c.event_id for c in clicks]
    first_after = {r.event_id: r for r in got}
    assert all(first_after[i].backend == "server" for i in ids[:300] if i in first_after)
    assert all(first_after[i].fallback and not first_after[i].backend for i in ids[300:] if i in first_after)
    _assert_close(_results(local.outcomes), got)
    (only,) = remote.operator.remote_metrics().values()
    assert only["fallback_rows"] == sum(1 for i in ids[300:] if i in first_after) > 250
    remote.operator.close()
    local.operator.close()


def test_dead_letter_fallback_makes_model_unavailable_dead_letters() -> None:
    operator = _operator(BackendConfig(url=f"http://127.0.0.1:{HTTP_PORT + 20}", deadline_ms=500, retries=0,
                                       fallback="dead_letter"))  # nothing listens there
    run = _Run(operator)
    outcomes = run.batch(_clicks(50, seed=3))
    assert outcomes and all(isinstance(o, Failure) and o.reason == Reason.MODEL_UNAVAILABLE for o in outcomes)
    (only,) = operator.remote_metrics().values()
    assert only["dead_letter_rows"] == len(outcomes)
    operator.close()
