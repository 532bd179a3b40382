"""A remote backend's deadline is per batch and counts from the batch's start (`RemoteModel.submit(inputs,
started)`): the work an operator did before the request is inside the budget, so a batch whose server is slowed
beyond the deadline takes at most the deadline plus its fallback's in-process time (issue 31's bound). The client
here is a stand-in that records the timeouts it is given and answers after `delay` seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np
import pytest

from operators.remote.backend import BackendConfig, RemoteModel
from operators.remote.breaker import BreakerState
from operators.remote.exceptions import ModelUnavailableError
from operators.remote.oip_clients import ModelMetadata

MANIFEST = {"name": "m", "version": 1, "sha256": "ab" * 32,
            "inputs": [{"name": "features", "shape": [-1, 2]}], "outputs": [{"name": "probability", "shape": [-1]}]}
ROWS = {"features": np.zeros((3, 2), dtype=np.float32)}


class _Server:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.timeouts: list[float] = []
        self.released = threading.Event()

    def metadata(self, name: str, version: int, timeout: float) -> ModelMetadata:
        return ModelMetadata(name, (str(version),), {"registry_name": "m", "registry_version": 1,
                                                     "sha256": MANIFEST["sha256"]})

    def infer(self, name: str, version: int, inputs: Mapping[str, np.ndarray], timeout: float) -> dict[str, np.ndarray]:
        self.timeouts.append(timeout)
        self.released.wait(self.delay)
        return {"probability": np.full(len(inputs["features"]), 0.5, dtype=np.float32)}

    def close(self) -> None:
        self.released.set()


def _model(server: _Server, deadline_ms: int) -> RemoteModel:
    config = BackendConfig(url="http://127.0.0.1:1", deadline_ms=deadline_ms, retries=0, breaker_failures=2)
    model = RemoteModel("server", config, MANIFEST, None, client=server)
    model.verify()
    return model


def test_the_deadline_counts_from_the_batch_start_not_from_the_request() -> None:
    server = _Server(delay=5.0)
    model = _model(server, deadline_ms=400)
    try:
        started = time.monotonic() - 0.3  # the batch spent 300 ms of its 400 before the request
        call = model.submit(ROWS, started)
        with pytest.raises(ModelUnavailableError, match="no answer within 400 ms"):
            call.result()
        assert time.monotonic() - started < 0.4 + 0.25  # the budget's end (plus scheduling slack), not 300 ms later
        assert server.timeouts and server.timeouts[0] <= 0.1 + 1e-3  # the server was given only what was left
        assert model.metrics.snapshot()["timeouts"] == 1
    finally:
        model.close()


def test_a_batch_without_budget_left_sends_nothing_and_does_not_count_against_the_server() -> None:
    server = _Server(delay=0.0)
    model = _model(server, deadline_ms=50)
    try:
        for _ in range(3):  # more than breaker_failures: a server failure this often would open the breaker
            call = model.submit(ROWS, time.monotonic() - 0.2)
            with pytest.raises(ModelUnavailableError, match="deadline passed before its request could be sent"):
                call.result()
        assert server.timeouts == []
        assert model.breaker.state is BreakerState.CLOSED
        assert model.metrics.snapshot()["rejected"] == 3
        answer = model.submit(ROWS, time.monotonic()).result()  # a batch with its budget is served as before
        assert answer["probability"].tolist() == [0.5, 0.5, 0.5]
    finally:
        model.close()


def test_without_a_start_the_deadline_counts_from_the_request() -> None:
    server = _Server(delay=0.0)
    model = _model(server, deadline_ms=1000)
    try:
        assert model.run(ROWS)["probability"].shape == (3,)
        assert 0.9 < server.timeouts[0] <= 1.0
    finally:
        model.close()
