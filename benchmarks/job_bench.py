"""Job-level throughput of the risk pipeline on the local Flink mini-cluster, against its own limits.

Peers in one run (same broker, same input topics):
- `offline`: the operator chain in a plain Python loop (decode, features, model, memory state, encode);
- `Passthrough`: the Flink job with a keyed function that only forwards the value (the engine's limit);
- `StateOnly`: the Flink job with one versioned-state read+write per event, no model;
- `NoFlinkState`: the Flink job with operator + model but an in-memory store;
- `full`: the real job (`streamscore run risk --bounded`).
Each Flink variant runs bounded over N1 and N2 events; throughput is (N2 - N1) / (T2 - T1), which cancels
JVM start-up and job deployment; likewise the CPU time per event (the job's process and its mini-cluster JVM,
all threads), which other load on the machine disturbs much less than the wall-clock rate. Writes JSON and a
PNG under benchmarks/results/.

Usage: python benchmarks/job_bench.py [--small 5000] [--large 25000] [--port 19192] [--variants full,StateOnly]
(a subset of variants writes `job_bench-dev.json` and leaves the recorded report alone)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("Passthrough", "StateOnly", "NoFlinkState", "full")

_RUNNER = """
import sys, time
from pathlib import Path
import pipelines.runtimes.flink.functions as functions
variant, bootstrap, topic, out = sys.argv[1:5]
if variant != "full":
    import job_variants
    functions.KeyedOperatorFunction = getattr(job_variants, variant)
from pipelines.runtimes.flink import job
from pipelines.runtimes.flink.options import JobOptions
options = JobOptions(pipeline="risk", bootstrap=bootstrap, input_topic=topic, output_topic=out + ".out",
                     dlq_topic=out + ".dlq", checkpoint_dir=Path("/tmp/streamscore-bench") / out, bounded=True)
import os, threading
ticks = os.sysconf("SC_CLK_TCK")
operator_cpu = {}


def sample_operator_thread():  # the task thread of the keyed operator, where pemja runs the Python operator
    while True:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
            jvms = fh.read().split()
        for pid in jvms:
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/comm") as fh:
                        if not fh.read().startswith("risk-operator"):
                            continue
                    with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                    operator_cpu[tid] = (int(fields[11]) + int(fields[12])) / ticks
            except OSError:
                pass
        time.sleep(0.2)


threading.Thread(target=sample_operator_thread, daemon=True).start()
start = time.perf_counter()
job.run(options)
print("SECONDS", time.perf_counter() - start, flush=True)
print("OPERATOR_CPU", sum(operator_cpu.values()), flush=True)
with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
    children = fh.read().split()
cpu = sum(os.times()[:2])
for pid in children:  # the mini-cluster JVM (pemja runs the Python operator inside it)
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu += (int(fields[11]) + int(fields[12])) / ticks
print("CPU", cpu, flush=True)
os._exit(0)
"""


def _offline_rate(events: list[bytes]) -> float:
    from operators.contract import OperatorContext
    from operators.risk.decoding import transaction_decoder
    from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
    from state import MemoryVersionedStore

    operator = RiskOperator()
    operator.open(OperatorContext())
    store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
    decoder = transaction_decoder()
    start = time.perf_counter()
    for raw in events:
        tx = decoder.decode(raw)
        for result in operator.process(tx, store.key(tx.account_id), None):  # type: ignore[union-attr,arg-type]
            msgspec.json.encode(result)
    return len(events) / (time.perf_counter() - start)


def _run_variant(variant: str, bootstrap: str, topic: str) -> tuple[float, float, float]:
    """(wall seconds of the bounded job, CPU seconds of its process and the mini-cluster JVM, CPU seconds of the
    keyed operator's task thread, sampled every 0.2 s)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]))
    out = f"bench-{uuid.uuid4().hex[:8]}-{variant}"
    proc = subprocess.run([sys.executable, "-c", _RUNNER, variant, bootstrap, topic, out],
                          capture_output=True, text=True, env=env, check=False)
    found = dict(line.split()[:2] for line in proc.stdout.splitlines()
                 if line.startswith(("SECONDS", "CPU", "OPERATOR_CPU")))
    if "SECONDS" in found and "CPU" in found:
        return float(found["SECONDS"]), float(found["CPU"]), float(found.get("OPERATOR_CPU", "nan"))
    raise RuntimeError(f"{variant} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    """Run every peer and write the JSON + PNG report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=25000)
    parser.add_argument("--port", type=int, default=19192)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of " + ", ".join(VARIANTS))
    args = parser.parse_args()
    args.variants = [v for v in args.variants.split(",") if v]
    if not set(args.variants) <= set(VARIANTS):
        parser.error(f"--variants must name some of {', '.join(VARIANTS)}")

    from pipelines.infra import broker

    was_running = broker.status(args.port).running
    bootstrap = broker.up(args.port).bootstrap
    try:
        _measure(args, bootstrap)
    finally:
        if not was_running:  # as bench.py does: stop only a broker this run started
            broker.down(args.port)


def _measure(args: argparse.Namespace, bootstrap: str) -> None:
    from pipelines.kafka.clients import ensure_topics, publish_records
    from pipelines.kafka.publishing import synthetic_records

    run = uuid.uuid4().hex[:8]
    topics = {}
    for n in (args.small, args.large):
        topics[n] = f"bench-{run}-{n}.in"
        ensure_topics(bootstrap, [topics[n]])
        publish_records(bootstrap, topics[n], synthetic_records("risk", n, 5))

    events = [value for _, value in synthetic_records("risk", args.large, 5)]
    rates = {"offline": _offline_rate(events)}
    seconds: dict[str, dict[int, float]] = {}
    cpu_us: dict[str, float] = {}
    operator_us: dict[str, float] = {}
    for variant in args.variants:
        runs = {n: _run_variant(variant, bootstrap, topics[n]) for n in (args.small, args.large)}
        seconds[variant] = {n: wall for n, (wall, _, _) in runs.items()}
        delta = seconds[variant][args.large] - seconds[variant][args.small]
        rates[variant] = (args.large - args.small) / delta if delta > 0 else float("nan")
        cpu_us[variant] = (runs[args.large][1] - runs[args.small][1]) / (args.large - args.small) * 1e6
        operator_us[variant] = (runs[args.large][2] - runs[args.small][2]) / (args.large - args.small) * 1e6
        print(f"{variant:>13}: {rates[variant]:8,.0f} events/s, {cpu_us[variant]:6.1f} CPU us/event, "
              f"{operator_us[variant]:6.1f} on the operator thread", flush=True)
    print(f"{'offline':>13}: {rates['offline']:8,.0f} events/s")
    report = {
        "benchmark": "risk job throughput (events/s)",
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "events": [args.small, args.large],
        "events_per_second": rates,
        "ratio_to_passthrough": (
            {k: v / rates["Passthrough"] for k, v in rates.items()} if "Passthrough" in rates else {}
        ),
        "seconds": {k: {str(n): s for n, s in v.items()} for k, v in seconds.items()},
        #: CPU time of the job's process and JVM per event (slope between the two sizes): less sensitive than
        #: the wall-clock rate to other load on the machine
        "cpu_us_per_event": cpu_us,
        #: of which the keyed operator's task thread (Python operator, state calls into RocksDB)
        "operator_thread_cpu_us_per_event": operator_us,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = list(args.variants) != list(VARIANTS)
    (RESULTS / ("job_bench-dev.json" if partial else "job_bench.json")).write_text(json.dumps(report, indent=2))
    if partial:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(rates)
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(names, [rates[n] for n in names], color=["#888", "#4a7", "#69c", "#c96", "#c44"])
        ax.set_ylabel("events/s")
        ax.set_title("risk pipeline throughput (one run, same broker)")
        fig.tight_layout()
        fig.savefig(RESULTS / "job_bench.png", dpi=120)
    except ImportError:
        pass
    print(f"wrote {RESULTS / 'job_bench.json'}")


if __name__ == "__main__":
    main()
