"""`CircuitBreaker` on an injected clock, and the validation of `BackendConfig` and remote routes."""

from __future__ import annotations

import msgspec
import pytest

from operators.remote.backend import BackendConfig
from operators.remote.breaker import BreakerState, CircuitBreaker
from operators.routing import ModelSelector, Route, RouteConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(3, 1.0, clock=Clock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the run of failures is broken
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow() and breaker.opened == 1


def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 2.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_failed_probe_opens_it_again_for_a_full_pause() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 1.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2
    clock.now += 0.5
    assert not breaker.allow()


@pytest.mark.parametrize(("fields", "problem"), [
    ({"url": "127.0.0.1:8080"}, "http://"),
    ({"url": "http://127.0.0.1:8081", "protocol": "grpc"}, "HOST:PORT"),
    ({"url": "http://h:1", "deadline_ms": 0}, ">= 1"),
    ({"url": "http://h:1", "fallback": "maybe"}, "fallback"),
])
def test_backend_config_refuses_what_cannot_work(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=problem):
        msgspec.convert(fields, BackendConfig)


def test_a_route_naming_an_undeclared_backend_is_refused() -> None:
    route = Route(code="big", when={"amount": {"at_least": 1.0}}, model="risk-large", backend="server")
    with pytest.raises(RouteConfigError, match="unknown backend 'server'"):
        ModelSelector("risk", [route])
    assert route.target == "risk-large~server"
    ModelSelector("risk", [route], backends={"server": BackendConfig(url="http://127.0.0.1:1")})
