"""Local vs remote model backends through the risk operator: in-process ONNX, a model server over v2 HTTP and
over v2 gRPC, at batch sizes 1, 64 and 500, in one run. Writes `benchmarks/results/remote_bench.json` and `.png`.

Each configuration scores the same synthetic transactions with `RiskOperator` (every event routed to the
backend under test; the local configuration has no route) through `apply_operator_batch` on a memory store,
for `--seconds` each: events/s, and p50/p99 of the per-batch latency (one request per batch to the server).
The server (`pipelines.infra.model_server.ModelServer`, MLServer from `.venv-serve`) runs on this machine, so a
remote figure is the protocol's and the server's cost, not a network's. Then the server is frozen (SIGSTOP)
and the HTTP and gRPC routes run again with a 50 ms deadline: each batch's p99 against the bound deadline + the
local model's p99 at that batch size (`frozen_server` in the JSON; breaker at its default and off).

    .venv/bin/python benchmarks/remote_bench.py [--seconds 3] [--model risk-large] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.batching import BatchItem, apply_operator_batch
from operators.contract import OperatorContext
from operators.remote.backend import BackendConfig
from operators.risk.decoding import transaction_decoder
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.schemas import Transaction
from operators.routing import Route
from pipelines.infra.model_server import ModelServer
from pipelines.kafka.publishing import synthetic_records
from state.contract import RetentionPolicy
from state.memory import MemoryVersionedStore

BATCHES = (1, 64, 500)
BACKENDS = ("local", "http", "grpc")
#: The frozen-server scenario: a deadline a latency-sensitive route would set, at the batch sizes runtimes use.
FROZEN_DEADLINE_MS = 50
FROZEN_BATCHES = (64, 500)


def _operator(model: str, backend: str, server: ModelServer, deadline_ms: int = 5000,
              breaker_failures: int = 5) -> RiskOperator:
    if backend == "local":
        operator = RiskOperator(model="risk", routes=[Route(code="all", when={"amount": {"at_least": 0.0}},
                                                            model=model)])
    else:
        url = server.http_url if backend == "http" else server.grpc_target
        config = BackendConfig(url=url, protocol=backend, deadline_ms=deadline_ms, retries=0,  # type: ignore[arg-type]
                               breaker_failures=breaker_failures)
        route = Route(code="all", when={"amount": {"at_least": 0.0}}, model=model, backend="server")
        operator = RiskOperator(model="risk", routes=[route], backends={"server": config})
    operator.open(OperatorContext())
    return operator


def _measure(operator: RiskOperator, events: list[Transaction], batch: int, seconds: float) -> dict[str, Any]:
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(RISK_STATE_CODEC, retention=RetentionPolicy(max_versions=4))
    latencies: list[float] = []
    scored = 0
    position = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if position + batch > len(events):  # start the stream again on a fresh store (no replays as duplicates)
            position = 0
            store = MemoryVersionedStore(RISK_STATE_CODEC, retention=RetentionPolicy(max_versions=4))
        chunk = events[position:position + batch]
        position += batch
        items = [BatchItem(e.account_id, e, store.key(e.account_id), None) for e in chunk]
        t0 = time.perf_counter()
        apply_operator_batch(operator, items)
        latencies.append(time.perf_counter() - t0)
        scored += len(chunk)
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"events": scored, "batches": len(latencies), "events_per_s": round(scored / elapsed, 1),
            "batch_p50_ms": round(float(np.percentile(ms, 50)), 3),
            "batch_p99_ms": round(float(np.percentile(ms, 99)), 3), "batch_max_ms": round(float(ms.max()), 3)}


def _frozen(model: str, server: ModelServer, events: list[Transaction], seconds: float,
            local: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The server frozen (SIGSTOP) beyond the deadline: every batch must come back within the deadline plus the
    local model's time (the route's in-process fallback). With the breaker at its default, it opens after 5
    timeouts and only its probes wait; with the breaker off, every batch waits its full deadline (the worst case)."""
    assert server.process is not None
    rows = []
    operators = {(backend, breaker): _operator(model, backend, server, FROZEN_DEADLINE_MS, failures)  # opened (the
                 for backend in BACKENDS[1:]  # identity check) while the server answers
                 for breaker, failures in (("default", 5), ("off", 1_000_000_000))}
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for (backend, breaker), operator in operators.items():
            for batch in FROZEN_BATCHES:
                row = {"backend": backend, "batch": batch, "breaker": breaker, "deadline_ms": FROZEN_DEADLINE_MS,
                       **_measure(operator, events, batch, seconds)}
                row["bound_ms"] = round(FROZEN_DEADLINE_MS + local[batch]["batch_p99_ms"], 3)
                row["p99_within_bound"] = row["batch_p99_ms"] <= row["bound_ms"]
                print(json.dumps(row), flush=True)
                rows.append(row)
            operator.close()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    return rows


def _plot(results: list[dict[str, Any]], frozen: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, third) = plt.subplots(1, 3, figsize=(16, 4))
    labels = [f"{r['backend']} {r['batch']}\nbreaker {r['breaker']}" for r in frozen]
    positions = np.arange(len(frozen))
    third.bar(positions - 0.2, [r["batch_p99_ms"] for r in frozen], 0.4, label="p99 batch latency")
    third.bar(positions + 0.2, [r["bound_ms"] for r in frozen], 0.4, label="deadline + local p99")
    third.set_xticks(positions, labels, fontsize=7)
    third.set_ylabel("ms")
    third.set_title(f"server frozen, deadline {FROZEN_DEADLINE_MS} ms")
    third.legend(fontsize=7)
    for backend in BACKENDS:
        rows = [r for r in results if r["backend"] == backend]
        left.plot([r["batch"] for r in rows], [r["events_per_s"] for r in rows], marker="o", label=backend)
        right.plot([r["batch"] for r in rows], [r["batch_p99_ms"] for r in rows], marker="o", label=backend)
    for axis, title in ((left, "events/s through the risk operator"), (right, "p99 batch latency (ms)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("batch size")
        axis.set_title(title)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run every (backend, batch) configuration once and write the JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--model", default="risk-large", help="the routed model (default %(default)s)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    decoder = transaction_decoder()
    decoded = [decoder.decode(raw) for _, raw in synthetic_records("risk", args.events, 5)]
    events = [e for e in decoded if isinstance(e, Transaction)]
    server = ModelServer([args.model]).start()
    results = []
    try:
        ready = server.wait_ready()
        for backend in BACKENDS:
            operator = _operator(args.model, backend, server)
            for batch in BATCHES:
                row = {"backend": backend, "batch": batch, **_measure(operator, events, batch, args.seconds)}
                print(json.dumps(row), flush=True)
                results.append(row)
            operator.close()
        local = {r["batch"]: r for r in results if r["backend"] == "local"}
        frozen = _frozen(args.model, server, events, args.seconds, local)
    finally:
        server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"model": args.model, "server": "mlserver 1.7.1 (own venv)", "server_ready_s": round(ready, 2),
              "seconds_per_config": args.seconds, "machine": platform.platform(),
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "results": results,
              "frozen_server": frozen}
    (args.out / "remote_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(results, frozen, args.out / "remote_bench.png")
    print(f"wrote {args.out / 'remote_bench.json'} and .png")


if __name__ == "__main__":
    main()
