"""The operators' own cost per event: the offline chain of each pipeline in a plain Python loop on one core.

Chain (what the streaming job does per record, minus the engine): validated JSON decode -> the operator's
`process` on the key's versioned state in a `MemoryVersionedStore` (the pipeline's retention) -> JSON encode of
each result. Each repetition starts from an empty store and a freshly opened operator and times the whole
loop over the same seeded synthetic events; the figure is the median µs/event over the repetitions
(min and max are reported too). The headline is the process's CPU time per event (one core's cost, robust
when other jobs share the machine); wall-clock time is reported next to it.
Target (issue 10): risk <= 25 µs/event (>= 40k events/s on one core).

`--batch N` (N > 1) runs the chain the way the runtimes that batch across keys do: the events in micro-batches of
N through `operators.batching.apply_operator_batch` (each item with its key's state handle), then the results'
encode; the default `--batch 0` measures both the one-at-a-time chain and batches of 500.

Usage: python benchmarks/operator_bench.py [--events 20000] [--repeat 5] [--pipeline risk|reco|all] [--batch N]
Writes benchmarks/results/operator_bench.json (only when every pipeline ran); `measure()` returns the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
PIPELINES = ("risk", "reco")
SEED = 5


def _chain(pipeline: str) -> tuple[Any, Any, Callable[[Any], str], Any, Any]:
    """(operator factory, decoder, key function, state codec, retention) of `pipeline`."""
    from operators.reco.decoding import click_decoder
    from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
    from operators.risk.decoding import transaction_decoder
    from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
    from state.contract import RetentionPolicy

    if pipeline == "risk":
        return RiskOperator, transaction_decoder(), lambda e: e.account_id, RISK_STATE_CODEC, RetentionPolicy(16)
    if pipeline == "reco":
        return RecoOperator, click_decoder(), lambda e: e.session_id, RECO_STATE_CODEC, RetentionPolicy(8)
    raise SystemExit(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")


def events_of(pipeline: str, n: int, seed: int = SEED) -> list[bytes]:
    """`n` seeded synthetic events of `pipeline` as the JSON values a producer publishes."""
    from pipelines.kafka.publishing import synthetic_records

    return [value for _, value in synthetic_records(pipeline, n, seed)]


def _opened_chain(pipeline: str) -> tuple[Any, Callable[[bytes], Any], Callable[[Any], str], Callable[[str], Any]]:
    """A freshly opened operator of `pipeline`, its decoder's decode, its key function and the state handle of a
    key in a new memory store with the pipeline's retention."""
    from operators.contract import OperatorContext
    from pipelines.runtimes.gc_tuning import tune_for_scoring
    from state.memory import MemoryVersionedStore

    make, decoder, key_of, codec, retention = _chain(pipeline)
    operator = make()
    operator.open(OperatorContext())
    tune_for_scoring()  # as every runtime does once its operator is open (`pipelines.runtimes.gc_tuning`)
    store: MemoryVersionedStore[Any] = MemoryVersionedStore(codec, retention=retention)
    return operator, decoder.decode, key_of, store.key


def run_once(pipeline: str, events: list[bytes], batch: int = 1) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one pass of the offline chain over `events` (fresh
    operator and store), one event at a time (`batch` 1) or in micro-batches of `batch` events."""
    if batch > 1:
        return _run_batched(pipeline, events, batch)
    from operators.decoding import Rejection

    operator, decode, key_of, state_of = _opened_chain(pipeline)
    encode = msgspec.json.encode
    process = operator.process
    start, cpu_start = time.perf_counter(), time.process_time()
    for raw in events:
        event = decode(raw)
        if isinstance(event, Rejection):
            raise RuntimeError(f"synthetic event rejected: {event}")
        for result in process(event, state_of(key_of(event)), None):
            encode(result)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    operator.close()
    return elapsed, cpu


def _run_batched(pipeline: str, events: list[bytes], batch: int) -> tuple[float, float]:
    """`run_once` through `apply_operator_batch` in micro-batches of `batch` events."""
    from operators.batching import BatchItem, apply_operator_batch
    from operators.core import Failure
    from operators.decoding import Rejection

    operator, decode, key_of, state_of = _opened_chain(pipeline)
    encode = msgspec.json.encode
    start, cpu_start = time.perf_counter(), time.process_time()
    for first in range(0, len(events), batch):
        items = []
        for raw in events[first : first + batch]:
            event = decode(raw)
            if isinstance(event, Rejection):
                raise RuntimeError(f"synthetic event rejected: {event}")
            key = key_of(event)
            items.append(BatchItem(key, event, state_of(key), None))
        for outcome in apply_operator_batch(operator, items):
            if isinstance(outcome, Failure):
                raise RuntimeError(f"synthetic event failed: {outcome}")
            for result in outcome:
                encode(result)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    operator.close()
    return elapsed, cpu


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "runs": [round(v, 2) for v in values],
    }


def measure(
    events: int = 20_000, repeat: int = 5, pipelines: tuple[str, ...] = PIPELINES, batches: tuple[int, ...] = (1, 500)
) -> dict[str, Any]:
    """µs/event of the offline chain per pipeline and batch size over `repeat` passes of `events` events:
    `us_per_event` is CPU time of the process (what one core spends; robust when other jobs share the machine),
    `wall_us_per_event` the elapsed time; median, min, max and every run. `events_per_second` is 1e6 / the CPU
    median. Batch size 1 is keyed by the pipeline's name (as before batching), others as `<pipeline>/batch<N>`."""
    figures: dict[str, Any] = {}
    for pipeline in pipelines:
        values = events_of(pipeline, events)
        for batch in batches:
            run_once(pipeline, values[: min(500, len(values))], batch)  # warm-up: imports, model load, caches
            runs = [run_once(pipeline, values, batch) for _ in range(repeat)]
            cpu = [c / len(values) * 1e6 for _, c in runs]
            wall = [w / len(values) * 1e6 for w, _ in runs]
            median = statistics.median(cpu)
            figures[pipeline if batch <= 1 else f"{pipeline}/batch{batch}"] = {
                "us_per_event": _spread(cpu),
                "wall_us_per_event": _spread(wall),
                "events_per_second": round(1e6 / median),
            }
    return {
        "benchmark": "operator offline chain (decode -> process on memory store -> JSON encode), one core; "
        "<pipeline>/batch<N>: the same through apply_operator_batch in micro-batches of N",
        "events": events,
        "repeat": repeat,
        "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]},
        "pipelines": figures,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and write benchmarks/results/operator_bench.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pipeline", choices=[*PIPELINES, "all"], default="all")
    parser.add_argument("--no-write", action="store_true", help="print only (e.g. under a profiler)")
    parser.add_argument("--batch", type=int, default=0, help="micro-batch size (1: one at a time; 0: 1 and 500)")
    args = parser.parse_args(argv)
    chosen = PIPELINES if args.pipeline == "all" else (args.pipeline,)
    report = measure(args.events, args.repeat, chosen, (1, 500) if args.batch <= 0 else (args.batch,))
    for pipeline, figures in report["pipelines"].items():
        us = figures["us_per_event"]
        wall = figures["wall_us_per_event"]
        print(f"{pipeline:>12}: {us['median']:7.2f} µs/event CPU (min {us['min']:.2f}, max {us['max']:.2f}) "
              f"= {figures['events_per_second']:,} events/s on one core; wall {wall['median']:.2f} µs/event")
    if args.pipeline == "all" and args.batch <= 0 and not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "operator_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {RESULTS / 'operator_bench.json'}")
    return report


if __name__ == "__main__":
    main()
