"""Overload of the risk job (issue 33, item 3): input at 3x its measured capacity for `--minutes`, then stopped.

Phases, one unbounded exactly-once job (`--runtime faust` by default, or `flink`) on the project's broker:
1. capacity: a burst of `--burst` events published at once after a warm-up; capacity = burst / the time from its
   first result to its last becoming visible (read_committed).
2. overload: events published at `--factor` x capacity (what the publisher reaches is reported) for `--minutes`.
3. drain: input stopped; time until every result is visible, and the drain rate.
4. capacity on the drained state: the same burst again. The keys now hold what minutes of traffic left in their
   state (the risk features' seen-sets full at 64 merchants and devices, ~800 ids in the idempotency window),
   so a key's event costs more than on the empty store of phase 1: "drained at full speed" compares the drain
   rate with this capacity (`drain_over_capacity_on_drained_state`); `drain_over_capacity` keeps phase 1's.
5. after: `--after-seconds` at 0.3x phase 4's capacity, to show the exactly-once latency back at its idle level.
Sampled every second: RSS of the job's processes (Python client/worker and JVM), the consumer lag of the job's
group (input end offsets minus committed offsets), results visible, and what the job's own metrics endpoint
(`--metrics-port`) says of lag and backpressure: the faust worker's `streamscore_consumer_lag` (summed) and
`streamscore_batch_size_max` (full batches: it is behind); the Flink job's Kafka source `pendingRecords` (summed)
and the tasks' `backPressuredTimeMsPerSecond` and `busyTimeMsPerSecond` (max). Exactly-once latency: every 50th
event's send time to its result's visibility in a read_committed consumer, reported for the events sent during
the overload and those sent after the drain. Nothing lost: every event has one result.

Results: benchmarks/results/overload_bench_<runtime>.json and .png.
Usage: python benchmarks/overload_bench.py [--minutes 5] [--runtime faust|flink] [--port 19692]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaException, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale_bench import java_descendants, rss_kb

from pipelines.infra import broker
from pipelines.infra.model_server import free_port
from pipelines.kafka.clients import committed_offsets, end_offsets, ensure_topics

RESULTS = Path(__file__).resolve().parent / "results"
ACCOUNTS = 20_000
SAMPLE_EVERY = 50  # every 50th event's send time is kept for the latency figures


def _event(i: int) -> tuple[bytes, bytes]:
    account = f"acct-{(i * 7919) % ACCOUNTS:06d}"
    event = {"event_id": f"ov-{i}", "account_id": account, "amount": round(5.0 + (i * 37) % 900, 2),
             "currency": "EUR", "merchant_id": f"m-{i % 311}", "country": "DE" if i % 17 else "FR",
             "device_id": f"d-{(i * 13) % ACCOUNTS}", "ts": int(time.time() * 1000)}
    return account.encode(), msgspec.json.encode(event)


class Publisher:
    """Publishes numbered events (at a rate, or as fast as it can) and keeps every 50th event's send time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                                  "message.timeout.ms": 600_000, "queue.buffering.max.messages": 1_000_000})
        self.topic = topic
        self.sent = 0
        self.sent_at: dict[int, float] = {}

    def send(self, count: int, rate: float | None = None, stop: threading.Event | None = None) -> float:
        """Send `count` events (until `stop` when count is 0) at `rate`/s if given; returns the rate reached."""
        start = time.monotonic()
        n = 0
        while (count and n < count) or (not count and stop is not None and not stop.is_set()):
            if rate is not None:
                pause = start + n / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            i = self.sent
            key, value = _event(i)
            if i % SAMPLE_EVERY == 0:
                self.sent_at[i] = time.time()
            try:
                self.producer.produce(self.topic, value, key)
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.producer.poll(0)
            self.sent += 1
            n += 1
        self.producer.flush(600)
        return n / max(time.monotonic() - start, 1e-9)


class Probe(threading.Thread):
    """Tails the output read_committed: counts results, records visibility latency of the sampled events."""

    def __init__(self, bootstrap: str, topic: str, sent_at: dict[int, float]) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.sent_at = sent_at
        self.ids: set[int] = set()
        self.duplicates = 0
        self.latencies: list[tuple[float, float]] = []  # (visible at, latency ms)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for message in self.consumer.consume(1000, timeout=0.2):
                if message.error() is not None:
                    continue
                now = time.time()
                event_id = msgspec.json.decode(message.value())["event_id"]
                i = int(event_id.removeprefix("ov-"))
                if i in self.ids:
                    self.duplicates += 1
                self.ids.add(i)
                sent = self.sent_at.get(i)
                if sent is not None:
                    self.latencies.append((now, (now - sent) * 1000))
        self.consumer.close()

    def wait_for(self, count: int, timeout_s: float) -> float:
        """Seconds until `count` distinct results are visible (raises after `timeout_s`)."""
        start = time.monotonic()
        while len(self.ids) < count:
            if time.monotonic() - start > timeout_s:
                raise RuntimeError(f"only {len(self.ids)} of {count} results after {timeout_s} s")
            time.sleep(0.05)
        return time.monotonic() - start


#: What the job's metrics endpoint is sampled for: (short name, the exposition names ending so, how to combine).
JOB_METRICS = {
    "faust": (("consumer_lag", "streamscore_consumer_lag", sum), ("batch_size_max", "streamscore_batch_size_max", max)),
    "flink": (("pending_records", "_pendingRecords", sum),
              ("backpressured_ms_per_s", "flink_taskmanager_job_task_backPressuredTimeMsPerSecond", max),
              ("busy_ms_per_s", "flink_taskmanager_job_task_busyTimeMsPerSecond", max)),
}


def scrape(port: int, runtime: str) -> dict[str, float]:
    """The job's own lag and backpressure figures (`JOB_METRICS`) from its Prometheus endpoint; {} if it does not
    answer (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode("utf-8", "replace")
    except OSError:
        return {}
    values: dict[str, list[float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        for short, suffix, _ in JOB_METRICS[runtime]:
            if name.endswith(suffix) and value == value:  # NaN: a gauge with nothing yet
                values.setdefault(short, []).append(value)
    return {short: combine(values[short]) for short, _, combine in JOB_METRICS[runtime] if short in values}


def _rss_mb(pid: int) -> tuple[float, float]:
    jvms = java_descendants(pid)
    return rss_kb(pid) / 1024, sum(rss_kb(p) for p in jvms) / 1024


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"p50_ms": round(ordered[len(ordered) // 2], 1), "p99_ms": round(ordered[int(len(ordered) * 0.99)], 1),
            "max_ms": round(ordered[-1], 1), "samples": len(ordered)}


def _chart(samples: list[dict[str, Any]], phases: dict[str, float], latencies: list[tuple[float, float]],
           t0: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    t = [s["t_s"] for s in samples]
    axes[0].plot(t, [s["lag"] for s in samples], label="consumer lag (events, committed offsets)")
    axes[0].plot(t, [s["results"] for s in samples], label="results visible")
    names = sorted({k for s in samples for k in s["job_metrics"]})
    for name in names:
        axes[1].plot(t, [s["job_metrics"].get(name, float("nan")) for s in samples], label=f"job metric: {name}")
    axes[1].set_yscale("symlog")
    axes[2].plot(t, [s["python_rss_mb"] for s in samples], label="client/worker RSS (MB)")
    axes[2].plot(t, [s["jvm_rss_mb"] for s in samples], label="JVM RSS (MB)")
    axes[3].plot([at - t0 for at, _ in latencies], [ms / 1000 for _, ms in latencies], ".", markersize=2,
                 label="send -> visible (s), read_committed")
    for axis in axes:
        for name, at in phases.items():
            axis.axvline(at, color="grey", linestyle="--", linewidth=0.8)
            axis.text(at, axis.get_ylim()[1] * 0.9, name, fontsize=7, color="grey")
        axis.legend(loc="upper left", fontsize=8)
    axes[3].set_xlabel("seconds")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _burst(publisher: Publisher, probe: Probe, count: int) -> float:
    """Events/s of a burst of `count` events published at once: from its first result to its last visible."""
    first = publisher.sent
    publisher.send(count)
    probe.wait_for(first + 1, 120)
    elapsed = probe.wait_for(publisher.sent, 900) + 0.0
    return count / max(elapsed, 1e-9)


def main() -> None:
    """Run the phases and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--runtime", choices=["faust", "flink"], default="faust")
    parser.add_argument("--port", type=int, default=19692)
    parser.add_argument("--burst", type=int, default=30_000)
    parser.add_argument("--after-seconds", type=float, default=30.0)
    args = parser.parse_args()

    status = broker.up(args.port)
    bootstrap = status.bootstrap
    run = uuid.uuid4().hex[:8]
    input_topic, output_topic, dlq_topic = f"ov-{run}.in", f"ov-{run}.out", f"ov-{run}.dlq"
    ensure_topics(bootstrap, [input_topic, output_topic, dlq_topic])
    work = Path(tempfile.mkdtemp(prefix="overload-"))
    group = f"overload-{run}"
    metrics_port = free_port()
    where = (["--runtime", "faust", "--state-dir", str(work / "state"), "--group-id", group]
             if args.runtime == "faust" else ["--checkpoint-dir", str(work / "checkpoints")])
    where += ["--metrics-port", str(metrics_port)]
    if args.runtime == "flink":
        group = f"streamscore-risk-{output_topic}"
    publisher = Publisher(bootstrap, input_topic)
    probe = Probe(bootstrap, output_topic, publisher.sent_at)
    probe.start()
    log = open(work / "job.log", "wb")  # noqa: SIM115 (closed at the end)
    job = subprocess.Popen([sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "risk",
                            "--input-topic", input_topic, "--output-topic", output_topic, "--dlq-topic", dlq_topic,
                            *where], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    samples: list[dict[str, Any]] = []
    stop_sampling = threading.Event()
    t0 = time.time()

    def sample() -> None:
        while not stop_sampling.is_set():
            try:
                ends = end_offsets(bootstrap, input_topic)
                done = committed_offsets(bootstrap, group, input_topic, ends)
            except KafkaException as exc:  # a broker busy or failing over: this second goes unsampled
                print(f"sample skipped: {exc}", file=sys.stderr, flush=True)
                stop_sampling.wait(1.0)
                continue
            python_mb, jvm_mb = _rss_mb(job.pid)
            samples.append({"t_s": round(time.time() - t0, 1), "results": len(probe.ids),
                            "lag": sum(end - max(done.get(p, 0), 0) for p, end in ends.items()),
                            "python_rss_mb": round(python_mb, 1), "jvm_rss_mb": round(jvm_mb, 1),
                            "job_metrics": scrape(metrics_port, args.runtime)})
            stop_sampling.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    phases: dict[str, float] = {}
    try:
        publisher.send(5_000)  # warm-up (includes the job's start)
        probe.wait_for(publisher.sent, 600)
        capacity = _burst(publisher, probe, args.burst)
        print(f"capacity ~{capacity:,.0f} events/s", flush=True)

        phases["overload"] = time.time() - t0
        stop = threading.Event()
        target = capacity * args.factor
        timer = threading.Timer(args.minutes * 60, stop.set)
        timer.start()
        reached = publisher.send(0, rate=target, stop=stop)
        overload_sent = publisher.sent
        phases["input stopped"] = time.time() - t0
        print(f"overload: target {target:,.0f}/s, reached {reached:,.0f}/s; draining", flush=True)
        backlog = overload_sent - len(probe.ids)
        drain_s = probe.wait_for(overload_sent, 3600)
        phases["drained"] = time.time() - t0
        capacity_drained = _burst(publisher, probe, args.burst)
        print(f"capacity on the drained state ~{capacity_drained:,.0f} events/s", flush=True)
        phases["after"] = time.time() - t0
        publisher.send(int(capacity_drained * 0.3 * args.after_seconds), rate=capacity_drained * 0.3)
        probe.wait_for(publisher.sent, 600)
        time.sleep(3)  # a doubled result would be visible by now
    finally:
        stop_sampling.set()
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
        probe.stop.set()
        log.close()
    def sent_between(start: float, end: float) -> list[float]:  # by send time (visible at - latency)
        return [ms for at, ms in probe.latencies if start <= at - ms / 1000 - t0 < end]

    overload_lat = sent_between(phases["overload"], phases["input stopped"])
    after_lat = sent_between(phases["after"], float("inf"))
    rss = [s for s in samples if s["t_s"] >= phases["overload"]]
    overload = [s for s in rss if s["t_s"] < phases["input stopped"]]
    summary = {
        "runtime": args.runtime, "minutes": args.minutes, "factor": args.factor,
        "capacity_events_per_s": round(capacity), "target_rate": round(target), "reached_rate": round(reached),
        "sent": publisher.sent, "results": len(probe.ids), "duplicates": probe.duplicates,
        "lost": publisher.sent - len(probe.ids), "backlog_when_input_stopped": backlog,
        "drain_s": round(drain_s, 1), "drain_rate": round(backlog / max(drain_s, 1e-9)),
        "drain_over_capacity": round(backlog / max(drain_s, 1e-9) / capacity, 2),
        "capacity_on_drained_state_events_per_s": round(capacity_drained),
        "drain_over_capacity_on_drained_state": round(backlog / max(drain_s, 1e-9) / capacity_drained, 2),
        "max_lag": max((s["lag"] for s in samples), default=0),
        "rss_mb_max": {"python": max((s["python_rss_mb"] for s in rss), default=0),
                       "jvm": max((s["jvm_rss_mb"] for s in rss), default=0)},
        "rss_mb_median": {"python": statistics.median([s["python_rss_mb"] for s in rss] or [0]),
                          "jvm": statistics.median([s["jvm_rss_mb"] for s in rss] or [0])},
        "eos_latency_during_overload": _quantiles(overload_lat), "eos_latency_after_drain": _quantiles(after_lat),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
        "job_metrics_max_during_overload": {
            name: max(s["job_metrics"][name] for s in overload if name in s["job_metrics"])
            for name in sorted({k for s in overload for k in s["job_metrics"]})
        },
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"overload_bench_{args.runtime}"
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    _chart(samples, phases, probe.latencies, t0, out.with_suffix(".png"),
           f"risk job on {args.runtime} under {args.factor:g}x overload for {args.minutes:g} min, then drained")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
