"""Bounded state at 10M distinct keys: the risk job with `state.ttl_hours` over 10M accounts, one event each,
event time advancing `--step-ms` per event, so keys stop receiving events and the job's sweep
(`pipelines.runtimes.expiry`) must remove them; RocksDB, checkpoints and JVM memory are sampled along the run.

The bound the settings give: a key is swept once its subtask's event clock is 2 TTLs past its newest event,
so about 2 x TTL / step keys are live at any time (the `expected_live_keys` of the report) - a constant, where
without a TTL every key ever seen stays (the `1000000-...` run of `scale_bench.json`, no TTL: ~220 MB of
RocksDB per million keys, so ~2.2 GB at 10M). Also a `--compare-keys` run (default 10k keys, 50 events each)
with the same settings for the throughput at 10M keys vs 10k keys.

Each run: fresh topics, `streamscore run risk --bounded --fresh --delivery at-least-once --config C` (C = the
shipped risk.yaml with `ttl_hours` and `sweep_check_seconds`), results read back read_committed (exactly one
per event, no dead letter). Samples every 5 s: results so far (the output's end offset), the job's RocksDB
folder, the newest checkpoint, the JVM's RSS. JSON + PNG in benchmarks/results/bounded_state_bench.*.

Usage: python benchmarks/bounded_state_bench.py [--keys 10000000] [--ttl-hours 1] [--step-ms 36]
       [--compare-keys 10000 --compare-events-per-key 50] [--port 19592]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_bench as scale

ROOT, RESULTS = scale.ROOT, scale.RESULTS
MB = 1024 * 1024


def records(keys: int, events_per_key: int, step_ms: int, seed: int, run: str) -> Iterator[tuple[bytes, bytes]]:
    """`keys * events_per_key` transactions, key i % keys (scattered after the first pass), `ts` = START + i *
    `step_ms`: with one event per key, each key is idle from its event on."""
    from pipelines.kafka.publishing import synthetic_events

    n = keys * events_per_key
    pool = synthetic_events("risk", min(n, scale.POOL), seed)
    encode = msgspec.json.Encoder().encode
    multiplier = scale._scatter(keys)
    for i in range(n):
        position = i % keys
        key = position if i < keys else (position * multiplier + i // keys) % keys
        event = dict(pool[i % len(pool)])
        account = f"acct-{key:08d}"
        event.update(event_id=f"{run}-{i}", account_id=account, ts=scale.START_MS + i * step_ms)
        yield account.encode(), encode(event)


class SeriesSampler:
    """Every 5 s: seconds since start, results so far, RocksDB MB, newest checkpoint MB, JVM RSS MB."""

    def __init__(self, root_pid: int, checkpoints: Path, bootstrap: str, output: str) -> None:
        self.rows: list[dict[str, float]] = []
        self._args = (root_pid, checkpoints, bootstrap, output)
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from pipelines.kafka.clients import end_offsets

        root, checkpoints, bootstrap, output = self._args
        while not self._stop.wait(5.0):
            pids = scale.java_descendants(root)
            if not pids:
                continue
            rss = sum(scale.rss_kb(pid) for pid in pids) / 1024
            rocks = sum(scale._du(d) for pid in pids for d in scale.rocksdb_dirs(pid)) / MB
            checkpoint = scale.checkpoint_size(checkpoints)
            try:
                scored = sum(end_offsets(bootstrap, output).values())
            except Exception:  # the broker is busy: skip this sample's count
                scored = -1
            self.rows.append({"t_s": round(time.monotonic() - self._start, 1), "results": scored,
                              "rocksdb_mb": round(rocks, 1), "jvm_rss_mb": round(rss, 1),
                              "checkpoint_mb": round(checkpoint[1] / MB, 1) if checkpoint else 0.0})

    def stop(self) -> list[dict[str, float]]:
        """Stop sampling; the rows."""
        self._stop.set()
        self._thread.join(15)
        return self.rows


def run(bootstrap: str, keys: int, events_per_key: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run over fresh topics (deleted afterwards)."""
    from pipelines.infra.processes import stop_process_group
    from pipelines.kafka.clients import ensure_topics
    from pipelines.risk.config import RISK_CONFIG_PATH

    run_id = f"bs{uuid.uuid4().hex[:8]}"
    names = {"in": f"bounded-{run_id}.in", "out": f"bounded-{run_id}.out", "dlq": f"bounded-{run_id}.dlq"}
    ensure_topics(bootstrap, list(names.values()))
    work = Path(tempfile.mkdtemp(prefix=f"bounded-state-{keys}-"))
    try:
        n = keys * events_per_key
        published = scale.publish(bootstrap, names["in"], records(keys, events_per_key, args.step_ms, args.seed,
                                                                  run_id))
        print(f"[{keys:,} keys] published {n:,} events in {published['seconds']} s", flush=True)
        config = work / "risk.yaml"
        config.write_text(RISK_CONFIG_PATH.read_text() + f"  ttl_hours: {args.ttl_hours}\n"
                          f"  sweep_check_seconds: {args.sweep_check_seconds}\n")
        checkpoints = work / "checkpoints"
        command = [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "risk", "--bounded", "--fresh",
                   "--delivery", "at-least-once", "--managed-memory", args.managed_memory, "--config", str(config),
                   "--input-topic", names["in"], "--output-topic", names["out"], "--dlq-topic", names["dlq"],
                   "--checkpoint-dir", str(checkpoints)]
        started = time.monotonic()
        with open(work / "run.out", "wb") as out:
            job = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                                   env=dict(os.environ, FLINK_LOG_DIR=str(work / "logs")))
        sampler = SeriesSampler(job.pid, checkpoints, bootstrap, names["out"])
        try:
            job.wait(timeout=1200 + n / 200)
        finally:
            series = sampler.stop()
            stop_process_group(job)
        wall = time.monotonic() - started
        if job.returncode != 0:
            raise RuntimeError(f"run exited {job.returncode}:\n{(work / 'run.out').read_text()[-3000:]}")
        read = scale.read_results(bootstrap, names["out"], run_id, n)
        rates = scale.steady_rate(read.pop("scored_at"))
        check = {"expected": n, **read, "dead_letters": scale.dead_letters(bootstrap, names["dlq"])}
        check["ok"] = check["results"] == n and not check["missing"] and not check["duplicates"] and \
            not check["unexpected"] and not check["dead_letters"]
        half = [row for row in series if row["results"] >= n / 2]
        result = {
            "keys": keys, "events": n, "events_per_key": events_per_key, "step_ms": args.step_ms,
            "ttl_hours": args.ttl_hours, "event_time_span_h": round(n * args.step_ms / 3_600_000, 1),
            "expected_live_keys": min(keys, int(2 * args.ttl_hours * 3_600_000 / args.step_ms)),
            "managed_memory": args.managed_memory, **rates, "wall_s": round(wall, 1), "check": check,
            "rocksdb_max_mb": max((r["rocksdb_mb"] for r in series), default=0.0),
            "rocksdb_max_mb_second_half": max((r["rocksdb_mb"] for r in half), default=0.0),
            "jvm_rss_max_mb": max((r["jvm_rss_mb"] for r in series), default=0.0),
            "checkpoint_max_mb": max((r["checkpoint_mb"] for r in series), default=0.0),
            "series": series, "publish": published, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["streamscore", *command[3:]]).replace(str(work), "WORK"),
        }
        print(f"[{keys:,} keys] steady {result['steady_events_per_second']} events/s, check ok={check['ok']}, "
              f"RocksDB max {result['rocksdb_max_mb']} MB, JVM RSS max {result['jvm_rss_max_mb']} MB", flush=True)
        return result
    finally:
        scale.delete_topics(bootstrap, list(names.values()))
        shutil.rmtree(work, ignore_errors=True)


def chart(report: dict[str, Any], path: Path) -> None:
    """RocksDB MB and JVM RSS MB against results so far, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in report["runs"].items():
        rows = [r for r in result["series"] if r["results"] >= 0]
        xs = [r["results"] / 1e6 for r in rows]
        axes[0].plot(xs, [r["rocksdb_mb"] for r in rows], label=f"{name}: {result['steady_events_per_second']} ev/s")
        axes[1].plot(xs, [r["jvm_rss_mb"] for r in rows], label=name)
    axes[0].set(title=f"RocksDB working set (TTL {report['ttl_hours']} h, sweep after 2 TTLs)",
                xlabel="events scored (millions)", ylabel="MB")
    axes[1].set(title="job JVM RSS", xlabel="events scored (millions)", ylabel="MB")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run the compare run and the big run; write JSON + PNG."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000_000)
    parser.add_argument("--compare-keys", type=int, default=10_000)
    parser.add_argument("--compare-events-per-key", type=int, default=50)
    parser.add_argument("--ttl-hours", type=int, default=1)
    parser.add_argument("--step-ms", type=int, default=36, help="event time between consecutive events")
    parser.add_argument("--sweep-check-seconds", type=int, default=10)
    parser.add_argument("--managed-memory", default="512m")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--port", type=int, default=19592)
    parser.add_argument("--out", default="bounded_state_bench")
    args = parser.parse_args()

    from pipelines.infra import broker

    out = RESULTS / f"{args.out}.json"
    report: dict[str, Any] = {"benchmark": "bounded state: the risk job with a TTL over many distinct keys",
                              "command": " ".join(["bounded_state_bench.py", *sys.argv[1:]]),
                              "machine": scale.machine(), "ttl_hours": args.ttl_hours, "runs": {}}
    was_running = broker.status(args.port).running
    bootstrap = broker.up(args.port).bootstrap
    try:
        for keys, per_key in ((args.compare_keys, args.compare_events_per_key), (args.keys, 1)):
            if keys <= 0:
                continue
            report["runs"][f"{keys}-keys-x{per_key}"] = run(bootstrap, keys, per_key, args)
            out.write_text(json.dumps(report, indent=2) + "\n")
            chart(report, RESULTS / f"{args.out}.png")
    finally:
        if not was_running:
            broker.down(args.port)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
