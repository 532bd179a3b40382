"""`streamscore demo`: broker up, the risk job running, synthetic load, and a summary of what happened.

Two phases against one running (unbounded, exactly-once) job: a paced phase measures latency from send to
the result being visible to a read_committed consumer; a burst phase measures throughput. A few malformed
records ride along to show dead letters. Everything is torn down at the end (the job is cancelled, its
checkpoints retained; the broker is stopped if the demo started it).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import numpy as np

from operators.risk.schemas import RiskResult
from pipelines.exceptions import SetupError
from pipelines.infra import broker
from pipelines.infra.home import subdir
from pipelines.infra.processes import stop_process_group
from pipelines.kafka.clients import consume, ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_events
from pipelines.risk.definition import RISK

#: The demo runs the risk pipeline.
PIPELINE = RISK.name

MALFORMED_EVERY = 250
CHECKPOINT_INTERVAL_MS = 1000
#: Events sent as fast as possible before the latency phase. A job that has just started runs well below its
#: capacity for its first thousands of events (the JVM is still compiling the hot paths: JFR showed the C2
#: compiler thread busy ~30 s after submission); a paced phase that starts then measures a queue, not the job.
WARMUP_EVENTS = 3000


@dataclass
class _Collected:
    received_ms: dict[str, int] = field(default_factory=dict)
    results: dict[str, RiskResult] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0


def _collect(bootstrap: str, topic: str, into: _Collected, stop: threading.Event, *, dlq: bool) -> None:
    for record in consume(bootstrap, topic, timeout_s=3600, stop=stop):
        if dlq:
            into.dead_letters += 1
            continue
        result = msgspec.json.decode(record.value, type=RiskResult)
        if result.event_id in into.results:
            into.duplicates += 1
        into.results[result.event_id] = result
        into.received_ms[result.event_id] = record.received_ms


def _records(events: list[dict[str, object]], malformed_every: int | None) -> tuple[list[tuple[bytes, bytes]], int]:
    records: list[tuple[bytes, bytes]] = []
    bad = 0
    for i, event in enumerate(events):
        records.append((str(event["account_id"]).encode(), msgspec.json.encode(event)))
        if malformed_every and i % malformed_every == malformed_every - 1:
            records.append((b"", msgspec.json.encode({**event, "amount": -1, "event_id": f"bad-{i}"})))
            bad += 1
    return records, bad


def _wait_for(collected: _Collected, ids: list[str], timeout_s: float, job: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(i in collected.results for i in ids):
            return
        if job.poll() is not None:
            raise SetupError(f"the risk job exited with code {job.returncode}; see its log")
        time.sleep(0.1)
    missing = sum(1 for i in ids if i not in collected.results)
    raise SetupError(f"{missing} of {len(ids)} results did not arrive within {timeout_s:.0f} s")


def run_demo(*, port: int, latency_events: int, burst_events: int, rate: float, seed: int) -> int:
    """Run the demo and print its summary; returns the exit code."""
    started_broker = not broker.status(port).running
    bootstrap = broker.up(port).bootstrap
    run = time.strftime("%Y%m%d-%H%M%S")
    topics = [f"{PIPELINE}.demo-{run}.{suffix}" for suffix in ("transactions", "scores", "dlq")]
    ensure_topics(bootstrap, topics)
    checkpoints = subdir("checkpoints", PIPELINE, f"demo-{run}")
    log_path = subdir("logs") / f"demo-{run}-job.log"
    print(f"broker: {bootstrap}; topics: {', '.join(topics)}", flush=True)

    collected = _Collected()
    stop = threading.Event()
    collectors = [
        threading.Thread(target=_collect, args=(bootstrap, topic, collected, stop), kwargs={"dlq": dlq}, daemon=True)
        for topic, dlq in ((topics[1], False), (topics[2], True))
    ]
    for collector in collectors:
        collector.start()
    with open(log_path, "wb") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", PIPELINE,
             "--input-topic", topics[0], "--output-topic", topics[1], "--dlq-topic", topics[2],
             "--checkpoint-dir", str(checkpoints), "--checkpoint-interval", str(CHECKPOINT_INTERVAL_MS)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        events = synthetic_events(PIPELINE, WARMUP_EVENTS + latency_events + burst_events, seed)
        warmup, paced = events[:WARMUP_EVENTS], events[WARMUP_EVENTS:WARMUP_EVENTS + latency_events]
        burst = events[WARMUP_EVENTS + latency_events:]
        print(f"starting the risk job (log: {log_path}) and warming it up with {len(warmup)} events ...", flush=True)
        publish_records(bootstrap, topics[0], _records(warmup, None)[0])
        _wait_for(collected, [str(e["event_id"]) for e in warmup], 300, job)

        print(f"latency phase: {len(paced)} events at {rate:.0f}/s ...", flush=True)
        paced_records, bad = _records(paced, MALFORMED_EVERY)
        tracked = [r[1] for r in paced_records]
        ids = [msgspec.json.decode(v)["event_id"] for v in tracked]
        sent = publish_records(bootstrap, topics[0], paced_records, rate=rate, track=ids).sent_at_ms or {}
        paced_ids = [str(e["event_id"]) for e in paced]
        _wait_for(collected, paced_ids, 120, job)

        print(f"throughput phase: {len(burst)} events as fast as possible ...", flush=True)
        burst_ids = [str(e["event_id"]) for e in burst]
        burst_start_ms = time.time() * 1000
        publish_records(bootstrap, topics[0], _records(burst, None)[0])
        _wait_for(collected, burst_ids, 600, job)
        burst_end_ms = max(collected.received_ms[i] for i in burst_ids)
        time.sleep(1.5)  # let the dead letters of the last checkpoint arrive
    finally:
        stop.set()
        for collector in collectors:
            collector.join(10)
        stop_process_group(job)
        if started_broker:
            broker.down(port)

    visible = np.array([collected.received_ms[i] - sent[i] for i in paced_ids], dtype=np.float64)
    scored = np.array([collected.results[i].scored_at - sent[i] for i in paced_ids], dtype=np.float64)
    decisions = Counter(r.decision for r in collected.results.values())
    throughput = len(burst) / max((burst_end_ms - burst_start_ms) / 1000, 1e-9)
    print("\n== streamscore demo: risk scoring ==")
    print(f"events scored:        {len(collected.results)} (duplicates seen by a read_committed consumer: "
          f"{collected.duplicates})")
    print(f"dead letters:         {collected.dead_letters} (expected {bad} malformed)")
    print("decisions:            " + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())))
    print(f"latency send->scored: p50 {np.percentile(scored, 50):.0f} ms, p99 {np.percentile(scored, 99):.0f} ms")
    print(f"latency send->visible (exactly-once, checkpoint every {CHECKPOINT_INTERVAL_MS} ms): "
          f"p50 {np.percentile(visible, 50):.0f} ms, p99 {np.percentile(visible, 99):.0f} ms")
    print(f"throughput:           {throughput:,.0f} events/s ({len(burst)} events, send->last visible result)")
    print(f"checkpoints retained: {checkpoints}")
    return 0
