"""CPU time per event of the Flink job's keyed operators (`--operator buffered` vs `per-record`), robust to a
shared machine.

On a busy 2-core machine wall-clock rates swing with the neighbours' load; the CPU time the job's JVM spends is far
steadier. Each run is `streamscore run PIPELINE --bounded --fresh --delivery at-least-once` over a pre-published
topic of N events; the JVM's user+system CPU seconds (from /proc, sampled until it exits) and the wall time are
recorded. The slope between two sizes, (cpu(N2) - cpu(N1)) / (N2 - N1), cancels start-up, and the same for wall.
Runs alternate between operators. Prints one line per run and the slopes; `--json` writes them.

Usage: python benchmarks/operator_cpu.py --port 19492 [--pipeline risk] [--sizes 10000,40000] [--reps 1]
       [--operators buffered:64,buffered:512,per-record]
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

from pipelines.infra import broker
from pipelines.kafka.clients import ensure_topics, publish_records
from pipelines.kafka.publishing import synthetic_records

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def _java_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def run_once(bootstrap: str, pipeline: str, topic: str, operator: str, workdir: Path) -> tuple[float, float]:
    """(JVM CPU seconds, wall seconds) of one bounded run; `operator` is `per-record`, `buffered` or
    `buffered:N` (a buffer of N records)."""
    operator, _, size = operator.partition(":")
    extra = ["--buffer-size", size] if size else []
    run = uuid.uuid4().hex[:8]
    command = [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", pipeline, "--bounded", "--fresh",
               "--delivery", "at-least-once", "--operator", operator, "--input-topic", topic,
               "--output-topic", f"{topic}.{run}.out", "--dlq-topic", f"{topic}.{run}.dlq",
               "--checkpoint-dir", str(workdir / run), *extra]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        for child in _java_children(proc.pid):
            seconds = _cpu_seconds(child)
            if seconds is not None:
                cpu[child] = seconds
        time.sleep(0.2)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {proc.returncode}")
    return sum(cpu.values()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pipeline", default="risk")
    parser.add_argument("--sizes", default="10000,40000")
    parser.add_argument("--operators", default="buffered,per-record",
                        help="comma-separated: per-record, buffered, buffered:N (a buffer of N records)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bootstrap = broker.up(args.port).bootstrap
    small, large = (int(n) for n in args.sizes.split(","))
    topics = {}
    for n in (small, large):
        topic = f"opcpu-{uuid.uuid4().hex[:8]}-{args.pipeline}-{n}"
        ensure_topics(bootstrap, [topic])
        publish_records(bootstrap, topic, list(synthetic_records(args.pipeline, n, 5)))
        topics[n] = topic
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "operator-cpu"
    runs: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for _ in range(args.reps):
        for operator in args.operators.split(","):
            for n in (small, large):
                cpu, wall = run_once(bootstrap, args.pipeline, topics[n], operator, workdir)
                runs.setdefault(operator, {}).setdefault(n, []).append((cpu, wall))
                print(f"{operator:<11} {n:>7,} events: JVM CPU {cpu:7.1f} s, wall {wall:6.1f} s", flush=True)
    summary = {}
    for operator, by_size in runs.items():
        cpu_s = min(c for c, _ in by_size[large]) - min(c for c, _ in by_size[small])
        wall_s = min(w for _, w in by_size[large]) - min(w for _, w in by_size[small])
        summary[operator] = {"cpu_us_per_event": cpu_s / (large - small) * 1e6,
                             "events_per_wall_second": (large - small) / wall_s if wall_s > 0 else None}
        print(f"{operator:<11} slope: {summary[operator]['cpu_us_per_event']:6.1f} us JVM CPU per event, "
              f"{summary[operator]['events_per_wall_second'] or 0:8,.0f} events/s wall", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"sizes": [small, large], "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
