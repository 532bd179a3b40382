"""`RemoteModel`: a registry model version served by a model server, behind the operators' model interface.

A pipeline declares backends (`BackendConfig`: protocol, url, deadline, in-flight limit, retries, fallback, circuit
breaker) and a route names one (`operators.routing.Route.backend`). The operator gets a `RemoteModel` with the
interface of `ModelHandle` (name, version, ref, sha256, manifest, input/output names, `run(inputs)`), plus
`submit(inputs)` -> `RemoteCall` so that a batch's remote request is in flight while the local models run:
one request per backend per batch, never one per event.

- Deadline: per batch, from the batch's start (`submit(inputs, started)`: the operator passes when it began the
  batch, so the work done before the request is inside the budget): `RemoteCall.result()` returns by then
  whatever the server does (retries share the deadline; a late answer is dropped), and a request whose batch has
  no time left is not sent. A batch thus takes at most the deadline plus its fallback's in-process time.
- Failures (timeout, transport error, HTTP/gRPC status, in-flight limit reached, open breaker) raise
  `ModelUnavailableError`; the operator then scores the batch's rows with `fallback` (the route's model run
  in-process) or dead-letters them with reason `model_unavailable` (`fallback: dead_letter`).
- Trust: `verify()` (at operator open, and again on every half-open probe, since a restarted server may serve
  another file) compares the server's v2 model metadata (name, version, `sha256` parameter) with the registry's
  manifest and raises `RemoteModelMismatchError` saying what differs.
- Metrics: `metrics` (`RemoteMetrics`: requests, errors, timeouts, rejections, fallback rows, latency
  percentiles, breaker state and openings) for the runtimes to export.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from models.handle import ModelHandle
from operators.remote.breaker import BreakerState, CircuitBreaker
from operators.remote.exceptions import ModelUnavailableError, RemoteCallError, RemoteModelMismatchError
from operators.remote.oip_clients import GrpcOipClient, HttpOipClient, OipClient

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
_LATENCY_WINDOW = 2048
#: A request is sent only if its batch has at least this much of its deadline left.
_MIN_REQUEST_S = 0.001


class BackendConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model server a route may name: how to reach it and what to do when it cannot answer in time.

    `url`: `http://HOST:PORT` for `protocol: http`, `HOST:PORT` for `grpc`. `deadline_ms`: per batch, retries
    included. `max_in_flight`: requests outstanding at once (a batch finding them all busy falls back at once).
    `retries`: extra attempts within the deadline. `fallback`: `local` (the route's model, in-process) or
    `dead_letter` (reason `model_unavailable`). The breaker opens after `breaker_failures` consecutive failed
    batches and probes after `breaker_reset_ms`. `open_timeout_ms`: the identity check at operator open.
    """

    url: str
    protocol: Literal["http", "grpc"] = "http"
    deadline_ms: PositiveInt = 200
    max_in_flight: PositiveInt = 4
    retries: NonNegativeInt = 1
    fallback: Literal["local", "dead_letter"] = "local"
    breaker_failures: PositiveInt = 5
    breaker_reset_ms: PositiveInt = 2000
    open_timeout_ms: PositiveInt = 5000

    def __post_init__(self) -> None:
        if self.protocol == "http" and not self.url.startswith("http://"):
            raise ValueError(f"url: protocol http expects http://HOST:PORT, got {self.url!r}")
        if self.protocol == "grpc" and ("://" in self.url or ":" not in self.url):
            raise ValueError(f"url: protocol grpc expects HOST:PORT, got {self.url!r}")

    def client(self) -> OipClient:
        """A v2 client of this backend's protocol."""
        return HttpOipClient(self.url) if self.protocol == "http" else GrpcOipClient(self.url)


class RemoteMetrics:
    """Counters of one remote backend (thread-safe): see `snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.successes = 0
        self.errors = 0
        self.timeouts = 0
        self.rejected = 0
        self.fallback_rows = 0
        self.dead_letter_rows = 0
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def add(self, **counts: int) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def latency(self, seconds: float) -> None:
        """Record one successful request's latency."""
        with self._lock:
            self._latencies.append(seconds)

    def snapshot(self) -> dict[str, float | int]:
        """The counters, plus `latency_p50_ms`/`latency_p99_ms` over the last successful requests."""
        with self._lock:
            latencies = np.array(self._latencies) * 1000.0
            counts: dict[str, float | int] = {
                k: getattr(self, k) for k in ("requests", "successes", "errors", "timeouts", "rejected",
                                              "fallback_rows", "dead_letter_rows")
            }
        counts["latency_p50_ms"] = round(float(np.percentile(latencies, 50)), 3) if len(latencies) else 0.0
        counts["latency_p99_ms"] = round(float(np.percentile(latencies, 99)), 3) if len(latencies) else 0.0
        return counts


class RemoteCall:
    """One request in flight: `result()` gives its outputs within the deadline, else `ModelUnavailableError`."""

    def __init__(self, model: RemoteModel, future: Future[dict[str, np.ndarray]] | None, deadline: float,
                 refused: str | None = None) -> None:
        self._model = model
        self._future = future
        self._deadline = deadline
        self._refused = refused

    def result(self) -> dict[str, np.ndarray]:
        """The outputs, or `ModelUnavailableError` (why) once the deadline passed or the call failed."""
        model = self._model
        if self._future is None:
            raise ModelUnavailableError(f"{model.describe()}: {self._refused}")
        try:
            outputs = self._future.result(timeout=max(0.0, self._deadline - time.monotonic()))
        except FutureTimeout:
            model.breaker.record_failure()
            model.metrics.add(timeouts=1)
            raise ModelUnavailableError(f"{model.describe()}: no answer within {model.config.deadline_ms} ms") from None
        except (RemoteCallError, RemoteModelMismatchError) as exc:
            model.breaker.record_failure()
            model.metrics.add(errors=1)
            raise ModelUnavailableError(f"{model.describe()}: {exc}") from exc
        model.breaker.record_success()
        model.metrics.add(successes=1)
        return outputs


class RemoteModel:
    """A registry model version on a model server (see the module docstring). `manifest` is the registry's;
    `fallback` the route's model in-process (None: dead-letter instead)."""

    def __init__(self, backend: str, config: BackendConfig, manifest: Mapping[str, Any],
                 fallback: ModelHandle | None, *, client: OipClient | None = None) -> None:
        self.backend = backend
        self.config = config
        self.manifest: dict[str, Any] = dict(manifest)
        self.name: str = str(self.manifest["name"])
        self.version: int = int(self.manifest["version"])
        self.ref = f"{self.name}@{self.version}"
        self.sha256: str = str(self.manifest["sha256"])
        self.input_names: tuple[str, ...] = tuple(t["name"] for t in self.manifest["inputs"])
        self.output_names: tuple[str, ...] = tuple(t["name"] for t in self.manifest["outputs"])
        self._output_shapes = {t["name"]: t["shape"] for t in self.manifest["outputs"]}
        self.fallback = fallback
        self.client = client or config.client()
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_ms / 1000.0)
        self.metrics = RemoteMetrics()
        self._pool = ThreadPoolExecutor(max_workers=config.max_in_flight, thread_name_prefix=f"remote-{backend}")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._verified = False

    def describe(self) -> str:
        """`risk-large@1 on backend `server` (http://…)`, for messages."""
        return f"{self.ref} on backend `{self.backend}` ({self.config.protocol} {self.config.url})"

    def verify(self, timeout: float | None = None) -> None:
        """Check that the server serves exactly the registry's version: `RemoteModelMismatchError` naming what
        differs, `RemoteCallError` if the server cannot be asked."""
        seconds = self.config.open_timeout_ms / 1000.0 if timeout is None else timeout
        meta = self.client.metadata(self.name, self.version, seconds)
        served = (meta.parameters.get("registry_name"), meta.parameters.get("registry_version"),
                  meta.parameters.get("sha256"))
        expected = (self.name, self.version, self.sha256)
        if served != expected:
            raise RemoteModelMismatchError(
                f"{self.describe()}: the server reports model name={served[0]!r} version={served[1]!r} "
                f"sha256={served[2]!r}, but the registry's {self.ref} has sha256={self.sha256!r}; refusing to route "
                f"events to a model that is not the registered one. Restart the server from this registry "
                f"(`streamscore models serve {self.ref}`), or point the route at the version the server serves."
            )
        self._verified = True

    def submit(self, inputs: Mapping[str, np.ndarray], started: float | None = None) -> RemoteCall:
        """Send one request for the whole batch (now, on a worker thread); see `RemoteCall.result`. `started`:
        when the batch began (`time.monotonic()`), the deadline's origin (default: now)."""
        now = time.monotonic()
        deadline = (now if started is None else min(started, now)) + self.config.deadline_ms / 1000.0
        if deadline - now < _MIN_REQUEST_S:  # the batch spent its budget before the request: not sent, not a
            self.metrics.add(rejected=1)     # failure of the server (the breaker does not count it)
            return RemoteCall(self, None, deadline, f"the batch's {self.config.deadline_ms} ms deadline passed "
                                                    "before its request could be sent")
        probing = self.breaker.state is not BreakerState.CLOSED
        if not self.breaker.allow():
            self.metrics.add(rejected=1)
            return RemoteCall(self, None, deadline, "the circuit breaker is open")
        with self._lock:
            if self._in_flight >= self.config.max_in_flight:
                self.metrics.add(rejected=1)
                self.breaker.record_failure()
                return RemoteCall(self, None, deadline, f"{self._in_flight} requests already in flight")
            self._in_flight += 1
        if probing:
            self._verified = False  # a server that was down may come back serving another file
        self.metrics.add(requests=1)
        future = self._pool.submit(self._call, dict(inputs), deadline)
        future.add_done_callback(self._done)
        return RemoteCall(self, future, deadline)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on the server (same contract as `ModelHandle.run`); `ModelUnavailableError` on failure."""
        return self.submit(inputs).result()

    def _done(self, future: Future[dict[str, np.ndarray]]) -> None:
        with self._lock:
            self._in_flight -= 1

    def _call(self, inputs: dict[str, np.ndarray], deadline: float) -> dict[str, np.ndarray]:
        started = time.monotonic()
        failure: RemoteCallError | None = None
        for _ in range(self.config.retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if not self._verified:
                    self.verify(remaining)
                outputs = self.client.infer(self.name, self.version, inputs, deadline - time.monotonic())
                shaped = self._shaped(outputs)
            except RemoteCallError as exc:
                failure = exc
                continue
            self.metrics.latency(time.monotonic() - started)
            return shaped
        raise failure or RemoteCallError(f"no attempt left within {self.config.deadline_ms} ms")

    def _shaped(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs in the manifest's shapes (servers may add a trailing unit dimension)."""
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise RemoteCallError(f"the answer lacks outputs {missing}")
        shaped = {}
        for name in self.output_names:
            dims = [d if isinstance(d, int) else -1 for d in self._output_shapes[name]]
            try:
                shaped[name] = outputs[name].reshape(dims)
            except ValueError as exc:
                raise RemoteCallError(f"output `{name}` of shape {list(outputs[name].shape)}: {exc}") from exc
        return shaped

    def state(self) -> dict[str, Any]:
        """The metrics snapshot with the breaker's state and how often it opened."""
        return {**self.metrics.snapshot(), "breaker": str(self.breaker.state), "breaker_opened": self.breaker.opened}

    def close(self) -> None:
        """Stop the workers (requests still running finish in the background) and the client."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def __repr__(self) -> str:
        return f"RemoteModel({self.describe()}, sha256={self.sha256[:12]}…)"
