"""The remote backends' metrics as the runtimes export them: every field `RemoteModel.state()` has is exported
under its `remote_*` name, and the faust worker's endpoint renders them labelled by backend and model."""

from __future__ import annotations

import re

from models.registry import ModelRegistry
from operators.remote.backend import BackendConfig, RemoteModel
from pipelines.runtimes.faust.metrics import WorkerMetrics
from pipelines.runtimes.remote_export import REMOTE_COUNTERS, REMOTE_GAUGES, remote_samples


def _remote_model() -> RemoteModel:
    registry = ModelRegistry()
    manifest = registry.manifest("risk-large", registry.current("risk-large"))
    return RemoteModel("server", BackendConfig(url="http://127.0.0.1:20399"), manifest, None)


def test_every_field_of_a_remote_models_state_is_exported() -> None:
    model = _remote_model()
    try:
        state = model.state()
    finally:
        model.close()
    assert set(REMOTE_COUNTERS) | set(REMOTE_GAUGES) | {"breaker"} == set(state)


def test_the_faust_endpoint_renders_remote_series_per_backend_and_model() -> None:
    model = _remote_model()
    try:
        model.metrics.add(requests=7, errors=2, timeouts=1, fallback_rows=300)
        model.metrics.latency(0.012)
        for _ in range(5):
            model.breaker.record_failure()  # the default breaker opens after 5 failures
        metrics = WorkerMetrics("risk")
        metrics.remote = lambda: {"server/risk-large@1": model.state()}
        text = metrics.render()
    finally:
        model.close()
    found = dict(re.findall(r'^streamscore_(remote_[a-z0-9_]+)\{runtime="faust",pipeline="risk",'
                            r'backend="server",model="risk-large@1"\} (\S+)$', text, re.MULTILINE))
    assert found["remote_requests"] == "7" and found["remote_errors"] == "2" and found["remote_timeouts"] == "1"
    assert found["remote_fallbacks"] == "300" and found["remote_breaker_open"] == "1"
    assert found["remote_breaker_openings"] == "1" and found["remote_latency_us_p50"] == "12000"
    assert "# TYPE streamscore_remote_requests counter" in text
    assert "# TYPE streamscore_remote_breaker_open gauge" in text
    assert len(found) == len(remote_samples({"k/m": model.state()}))


def test_no_remote_routes_no_remote_series() -> None:
    assert "remote_" not in WorkerMetrics("risk").render()
