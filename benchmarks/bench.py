"""`make bench`: streamscore against its peers and its limits, one broker, the same events, one run.

Systems (each its own process; see `peers/systems.py`): the Python consume->produce limit, the Flink
passthrough limit, a naive PyFlink job, a Quix Streams application, `streamscore run risk` at-least-once and
exactly-once, `streamscore run reco`, and the operator chain offline (µs/event). For each:

- throughput: slope between two input sizes inside one bounded run over N2 events, `(N2 - N1) / (t(N2) - t(N1))`
  with t(n) the broker's append time of the n-th result, so start-up and its variance cancel (the same slope
  from two runs, process start to end, varied 50x between repetitions: a Flink job's start-up alone varies by
  +-5 s on the shared machine; `--end-to-end` still records those times); repetitions interleaved (system A,
  then B, ..., then again), min/median/max;
- latency: the system started unbounded, warmed up, then fed at 50 % of its own median throughput by a paced
  producer: send -> scored (`scored_at` - send time) and send -> visible (read_committed receive - send
  time), p50/p99/p99.9 of the steady state (the first `LATENCY_SETTLING_SECONDS` of pacing are checked but
  reported apart, as the settling p99);
- latency at low load: the `low_load` systems again at `LOW_LOAD_FRACTION` (10 %) of their throughput, the same
  way (`latency_low_load` in the JSON): what one event waits for when nothing is queued;
- outputs: exactly one result per input event by event id, and scores/decisions equal to the offline scorer's;
  a system that loses or doubles results is `failed` and not ranked.

Writes benchmarks/results/bench.json + bench.png; `make bench` then renders the tables of README.md and
docs/runtimes.md from that JSON (benchmarks/tables.py). `--quick` and `--systems` runs write bench-dev.json/png
instead, which no table reads.

Usage: python benchmarks/bench.py [--quick] [--systems a,b,...] [--port 19192] [--reps 3] [--end-to-end]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec
from bench_report import add_ratios, plot, system_summary, table
from bench_runs import Bench, LatencyRecord, RunRecord, create_topics, delete_topics, latency_run, throughput_run
from confluent_kafka import Producer
from peers import quix_venv
from peers.systems import REFERENCE, ROOT, SYSTEMS, System

from pipelines.infra import broker
from pipelines.infra.jars import FLINK_KAFKA_CONNECTOR, KAFKA_VERSION
from pipelines.kafka.clients import publish_records
from pipelines.kafka.publishing import synthetic_records
from pipelines.runtimes.offline import score_lines

RESULTS = ROOT / "benchmarks" / "results"
SEED = 5
LATENCY_SEED = 11
WARMUP_EVENTS = 200  # the start-up warm-up runs before anything is timed
#: Events a latency run sends before the paced phase (and waits for): enough for the JVM to compile the hot
#: paths, so that the paced phase does not measure the queue a still-cold job builds up. 2,000 were not: on
#: 2026-12-07 a Flink job's C2 compiler still used 20-30 % of a core 30 s after start, and a paced run after 2,000
#: events queued up to ~1 s in its first seconds that the 5 s of settling did not always drain. The same number for
#: every system, but never more than ~10 s of its paced rate nor fewer than 2,000 (`latency_warmup`).
LATENCY_WARMUP_EVENTS = 20_000
#: Seconds of paced input after the warm-up that are not measured: the 2026-12-02 run showed every Flink
#: system (the passthrough too) still above its steady latency for the first ~3 s of pacing (JIT, first
#: checkpoints), e.g. streamscore risk 316/426/241/39 ms per second, then 15 ms. What users run is the
#: steady state; the settling window is still checked and its p99 reported (`settling_send_to_visible_ms`).
LATENCY_SETTLING_SECONDS = 5.0
#: The load of the second latency run that the `low_load` systems get (the faust runtimes, the Flink buffered risk
#: job and the Quix app): at 10 % of its throughput a system is mostly idle, so its send -> scored is what one
#: event waits for (a batch window, a poll interval), not a queue.
LOW_LOAD_FRACTION = 0.1


@dataclass
class Input:
    """A pre-published input topic: its name, event ids and the offline scorer's result per event id."""

    topic: str
    ids: set[str]
    reference: dict[str, bytes]


def _event_id(value: bytes) -> str:
    return str(msgspec.json.decode(value)["event_id"])


def _same_result(pipeline: str) -> Callable[[bytes, bytes], bool]:
    fields = ("score", "decision", "reasons") if pipeline == "risk" else ("items",)

    def same(got: bytes, want: bytes) -> bool:
        a, b = msgspec.json.decode(got), msgspec.json.decode(want)
        return all(a.get(f) == b.get(f) for f in fields)

    return same


def publish_inputs(bootstrap: str, run_id: str, wanted: set[tuple[str, int]], scored: set[tuple[str, int]]
                   ) -> dict[tuple[str, int], Input]:
    """Publish `synthetic_records(pipeline, n, SEED)` once per wanted (pipeline, n); offline results for `scored`."""
    inputs = {}
    for pipeline, n in sorted(wanted):
        records = list(synthetic_records(pipeline, n, SEED))
        topic = f"bench-{run_id}-{pipeline}-{n}.in"
        create_topics(bootstrap, [topic])
        publish_records(bootstrap, topic, records)
        reference: dict[str, bytes] = {}
        if (pipeline, n) in scored:
            for encoded, letter in score_lines(pipeline, iter(v for _, v in records), source="bench"):
                if letter is None:
                    reference[_event_id(encoded)] = encoded
        inputs[(pipeline, n)] = Input(topic, {_event_id(v) for _, v in records}, reference)
    return inputs


def warm_broker(bootstrap: str, run_id: str) -> None:
    """Commit one transaction so the broker's transaction coordinator is loaded before anything is timed."""
    topic = f"bench-{run_id}-warmup.txn"
    create_topics(bootstrap, [topic])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"bench-{run_id}-warmup"})
    producer.init_transactions(120)
    producer.begin_transaction()
    producer.produce(topic, b"warm-up")
    producer.commit_transaction(60)


def machine() -> dict[str, Any]:
    """The machine and the checkout the figures come from."""
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!README.md",
                            ":!benchmarks/results"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0") if Path("/proc/meminfo").exists() else "0"
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": java[0] if java else "?",
        "git_commit": commit + (" (uncommitted changes)" if dirty else ""),
    }


def versions(quix: bool) -> dict[str, Any]:
    """Versions of the engines and clients in play."""
    found: dict[str, Any] = {}
    for name in ("apache-flink", "confluent-kafka", "onnxruntime", "numpy", "msgspec", "rocksdict"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found |= {"kafka_broker": KAFKA_VERSION, "flink_kafka_connector": FLINK_KAFKA_CONNECTOR}
    if quix:
        found["quix_venv"] = quix_venv.versions()
    return found


def _status(record: RunRecord) -> str:
    if record.ok:
        extra = f", {record.check.disagree} differ from offline" if record.check and record.check.disagree else ""
        return f"ok{extra}"
    c = record.check
    counts = f"{c.missing} missing, {c.duplicates} doubled, {c.unexpected} unexpected; " if c else ""
    return f"FAILED ({counts}{record.error.splitlines()[0] if record.error else ''})"


def throughput_phase(bench: Bench, systems: list[System], sizes: dict[str, tuple[int, int]],
                     inputs: dict[tuple[str, int], Input], reps: int, small_runs: bool) -> dict[str, list[RunRecord]]:
    """Every system over its large input per repetition (and its small one too with `small_runs`), repetitions
    interleaved across systems (A B C, A B C, ...)."""
    runs: dict[str, list[RunRecord]] = {s.name: [] for s in systems}
    for rep in range(reps):
        for system in systems:
            small, large = sizes[system.name]
            order = ((small, large) if rep % 2 == 0 else (large, small)) if small_runs else (large,)
            for n in order:
                source = inputs[(system.pipeline, n)]
                scored = system.scores
                record = throughput_run(bench, system, source.topic, n, rep, source.ids,
                                        source.reference if scored else None,
                                        _same_result(system.pipeline) if scored else None,
                                        timeout_s=120 + n / 100, mark=small if n == large else 0)
                runs[system.name].append(record)
                rate = f"{record.rate:9,.0f}/s" if record.rate else " " * 11
                print(f"  rep {rep + 1} {system.name:<22} {n:>7,} events {record.seconds:6.1f} s {rate}  "
                      f"{_status(record)}", flush=True)
    return runs


def latency_warmup(rate: float) -> int:
    """Warm-up events before a latency run paced at `rate`: `LATENCY_WARMUP_EVENTS`, at most ~10 s of the paced
    rate (a slow system is not kept warming for minutes), at least 2,000."""
    return max(2_000, min(LATENCY_WARMUP_EVENTS, round(10 * rate)))


def latency_phase(bench: Bench, systems: list[System], medians: dict[str, float], seconds: float, cap: float,
                  fraction: float = 0.5, tag: str = "latency") -> dict[str, LatencyRecord]:
    """Each system with a throughput figure, fed at min(`fraction` of it, `cap`) events/s for ~`seconds`."""
    out = {}
    for system in systems:
        if system.name not in medians:
            continue
        rate = min(fraction * medians[system.name], cap)
        n = max(200, round(rate * seconds))
        settling = round(rate * LATENCY_SETTLING_SECONDS)
        warmup = latency_warmup(rate)
        records = list(synthetic_records(system.pipeline, warmup + settling + n, LATENCY_SEED))
        ids = [_event_id(v) for _, v in records]
        record = latency_run(bench, system, records, ids, warmup, rate, settling, tag=tag)
        out[system.name] = record
        scored = sorted(record.send_to_scored_ms)
        visible = sorted(record.send_to_visible_ms)
        p50 = f"scored p50 {scored[len(scored) // 2]} ms, " if scored else ""
        p50 += f"visible p50 {visible[len(visible) // 2]} ms" if visible else ""
        ok = "ok" if record.check and record.check.ok and not record.error else f"FAILED {record.error[:200]}"
        print(f"  {tag} {system.name:<22} at {rate:,.0f}/s: {p50} ({ok})", flush=True)
    return out


def offline_phase(risk_events: int, reco_events: int, reps: int) -> dict[str, Any]:
    """The operator chain without Kafka or Flink, in its own process: µs/event per pipeline."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers" / "offline.py"),
                           "--risk-events", str(risk_events), "--reco-events", str(reco_events),
                           "--reps", str(reps), "--seed", str(SEED)],
                          capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    return {p: {"events": v["events"], "us_per_event": {
        "min": min(v["us_per_event"]), "median": sorted(v["us_per_event"])[len(v["us_per_event"]) // 2],
        "max": max(v["us_per_event"])}, "per_rep": v["us_per_event"]} for p, v in raw.items()}


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition, short latency runs")
    parser.add_argument("--systems", default="", help=f"comma-separated subset of {','.join(SYSTEMS)}, offline")
    parser.add_argument("--port", type=int, default=19192, help="broker port (started if not running)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="paced phase (default 10, quick 4)")
    parser.add_argument("--latency-cap", type=float, default=10_000,
                        help="highest paced rate (the bench's own producer and consumer share the 2 cores)")
    parser.add_argument("--keep", action="store_true", help="keep topics and run folders")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also run each system over its small input, for the process start-to-end times of both "
                             "sizes (their difference is swamped by start-up variance on a shared 2-core machine)")
    return parser.parse_args()


def main() -> None:
    """Run the benchmark and write its outputs."""
    args = parse_args()
    names = [n.strip() for n in args.systems.split(",") if n.strip()] or [*SYSTEMS, "offline"]
    unknown = [n for n in names if n not in SYSTEMS and n != "offline"]
    if unknown:
        sys.exit(f"unknown systems {unknown}; known: {', '.join(SYSTEMS)}, offline")
    systems = [SYSTEMS[n] for n in SYSTEMS if n in names]
    full = not args.quick and not args.systems
    reps = args.reps or (1 if args.quick else 3)
    latency_seconds = args.latency_seconds or (4.0 if args.quick else 10.0)
    sizes = {s.name: s.quick_sizes if args.quick else s.sizes for s in systems}
    started = time.perf_counter()
    load_before = os.getloadavg()

    was_running = broker.status(args.port).running
    bootstrap = broker.up(args.port).bootstrap
    run_id = uuid.uuid4().hex[:8]
    quix_python = quix_venv.ensure_venv() if any(s.needs_quix for s in systems) else None
    bench = Bench(bootstrap, run_id, ROOT / ".bench" / "runs" / run_id, quix_python)
    print(f"bench {run_id}: broker {bootstrap}, systems {', '.join(names)}, {reps} rep(s)", flush=True)
    try:
        warm_broker(bootstrap, run_id)
        runs_of = {s.name: sizes[s.name] if args.end_to_end else sizes[s.name][1:] for s in systems}
        wanted = {(s.pipeline, n) for s in systems for n in runs_of[s.name]} | {("risk", WARMUP_EVENTS)}
        scored = {(s.pipeline, n) for s in systems if s.scores for n in runs_of[s.name]}
        inputs = publish_inputs(bootstrap, run_id, wanted, scored)
        print(f"  published {len(inputs)} input topics ({time.perf_counter() - started:.0f} s)", flush=True)
        for system in [s for s in systems if s.name in ("streamscore-risk-eos", "quix")]:  # cold start off the clock
            warm = inputs[("risk", WARMUP_EVENTS)]
            record = throughput_run(bench, system, warm.topic, WARMUP_EVENTS, -1, warm.ids, None, None, 300)
            print(f"  warm-up {system.name:<22} {record.seconds:7.1f} s  {_status(record)}", flush=True)
        runs = throughput_phase(bench, systems, sizes, inputs, reps, args.end_to_end)
        medians = {}
        for s in systems:
            summary = system_summary(s.name, s.description, sizes[s.name], runs[s.name], None, s.exactly_once)
            basis = summary["throughput"] or summary["first_to_last_result_rate"]
            if basis:
                medians[s.name] = basis["median"]
        offline = {}
        if "offline" in names:
            risk_n = max((n for s in systems if s.pipeline == "risk" for n in sizes[s.name]), default=10_000)
            reco_n = max((n for s in systems if s.pipeline == "reco" for n in sizes[s.name]), default=8_000)
            offline = offline_phase(min(risk_n, 30_000), min(reco_n, 30_000), reps)
        latency = latency_phase(bench, systems, medians, latency_seconds, args.latency_cap)
        low_load = latency_phase(bench, [s for s in systems if s.low_load], medians, latency_seconds,
                                 args.latency_cap, LOW_LOAD_FRACTION, "low-load")
    finally:
        if not args.keep:
            delete_topics(bootstrap, f"bench-{run_id}")
        if not was_running:
            broker.down(args.port)

    report: dict[str, Any] = {
        "benchmark": "streamscore vs peers, one broker, the same pre-published events",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine() | {"load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "versions": versions(quix_python is not None),
        "settings": {"reps": reps, "quick": args.quick, "seed": SEED, "latency_seconds": latency_seconds,
                     "latency_rate": "50 % of the system's median throughput", "latency_cap": args.latency_cap,
                     "latency_warmup_events": f"min({LATENCY_WARMUP_EVENTS}, 10 s of the paced rate), at least 2000",
                     "latency_settling_seconds": LATENCY_SETTLING_SECONDS,
                     "low_load_fraction": LOW_LOAD_FRACTION},
        "systems": {s.name: system_summary(s.name, s.description, sizes[s.name], runs[s.name], latency.get(s.name),
                                           s.exactly_once, low_load.get(s.name)) for s in systems},
        "offline": offline,
        "seconds": time.perf_counter() - started,
    }
    add_ratios(report["systems"], REFERENCE)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "bench" if full else "bench-dev"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, REFERENCE, RESULTS / f"{stem}.png")
    text = table(report, REFERENCE)
    print("\n" + text + "\n")
    for name, summary in report["systems"].items():
        if "warning" in summary:
            print(f"note: {name}: {summary['warning']}")
    print(f"wrote {RESULTS / (stem + '.json')} and .png in {report['seconds'] / 60:.1f} min")
    all_ok = all(r.ok for rs in runs.values() for r in rs)
    if all_ok and not args.keep:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    elif not all_ok:
        print(f"logs of the runs: {bench.workdir}")


if __name__ == "__main__":
    main()
