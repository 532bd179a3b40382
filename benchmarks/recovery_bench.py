"""Crash recovery of the risk job against state size: SIGKILL, restart, time to the first new committed result.

For each key count N (distinct accounts, one event per account, so the keyed RocksDB state holds N keys):
1. publish N events and run `streamscore run risk` (unbounded, exactly-once, checkpoints every 1 s) until its
   consumer group has committed offset N, i.e. a checkpoint covering every event completed; measure the
   checkpoint on disk (the whole job folder: shared SST files + the retained checkpoints, and `_metadata`);
2. SIGKILL the job's process group (the Python client and the mini-cluster JVM) while it is idle;
3. restart `streamscore run risk` at once (it resumes from the newest retained checkpoint) and publish 50 new
   events for existing accounts (state lookups on restored keys);
4. measure, on the same wall clock:
   - `kill_to_first_new_result_s`: SIGKILL -> the first result of a new event seen by a read_committed consumer
     (includes process + JVM start, job deployment, state restore, scoring, and the exactly-once commit, which
     happens when the first checkpoint after the restore completes);
   - `rocksdb_restore_s`: Flink's "Starting RocksDB incremental recovery" -> "Finished RocksDB incremental
     recovery" log lines of the keyed operator (copying the checkpoint's SST files into the local working
     folder and opening the DB): the state restore proper;
   - `operator_initializing_s`: the keyed operator task's INITIALIZING -> RUNNING (state restore + operator
     `open`: Python function set-up and ONNX session);
   - `restart_to_job_running_s`: restart -> Flink's "Job ... switched from state CREATED to RUNNING";
   - `restart_to_first_scored_s`: restart -> the first new result's own `scored_at` (first record processed).
Results go to benchmarks/results/recovery_bench.json (merged per key count) and recovery_bench.png.

Usage: python benchmarks/recovery_bench.py [--keys 100000 [1000000 ...]] [--managed-memory 512m] [--port 19392]
`--managed-memory SIZE` is passed to `streamscore run --managed-memory` (RocksDB's block cache and write buffers;
the job's default is 512m since this benchmark found that local execution's 128 MB default slows a 1M-key load
~10x past ~400k keys, see NOTES; `--managed-memory 128m` reproduces that).
1M keys runs ~1M events through the job: ~9 min on 2 cores; `make bench` does not run
this file (it runs neither this nor job_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

NOTES = [
    "kill_to_first_new_result_s is dominated by process + JVM + job start (restart_to_job_running_s); the RocksDB "
    "restore proper is well under a second at 1M keys (the local file system checkpoint is copied, not downloaded)",
    "with the mini-cluster's default managed memory (128 MB in local execution: a ~78 MB RocksDB block cache) "
    "a 1M-key load slowed from ~1,100 to ~110 events/s once ~400k keys were in state (checkpoints took ~10 s); "
    "the 1M run therefore uses --managed-memory 512m (and the 100k run is repeated with it for comparison)",
    "machine load from other processes varies between runs: see machine.load_avg of each run",
]
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NEW_EVENTS = 50
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
COUNTRIES = (("US", "USD"), ("GB", "GBP"), ("DE", "EUR"), ("FR", "EUR"), ("JP", "JPY"))
LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")


def _event(i: int, event_id: str, ts: int) -> dict[str, object]:
    country, currency = COUNTRIES[i % len(COUNTRIES)]
    return {"event_id": event_id, "account_id": f"acct-{i:07d}", "amount": round(5 + (i * 7919) % 20000 / 100, 2),
            "currency": currency, "merchant_id": f"m-{i % 997}", "country": country, "device_id": f"d-{i}", "ts": ts}


def one_event_per_key(n: int) -> Iterator[tuple[bytes, bytes]]:
    """`n` valid transactions, each for a different account (`acct-0000000` ...), keyed by account."""
    for i in range(n):
        event = _event(i, f"ev-{i}", START_MS + i * 10)
        yield str(event["account_id"]).encode(), msgspec.json.encode(event)


def new_events(n: int, total: int) -> list[tuple[bytes, bytes]]:
    """`n` new events for existing accounts spread over the key space (their state must be restored)."""
    step = max(1, total // n)
    records = []
    for j in range(n):
        event = _event(j * step, f"new-{j}", START_MS + total * 10 + j)
        records.append((str(event["account_id"]).encode(), msgspec.json.encode(event)))
    return records


def _start_run(
    bootstrap: str, names: dict[str, str], checkpoints: Path, log_dir: Path, managed_memory: str | None
) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FLINK_LOG_DIR=str(log_dir))
    argv = ["--bootstrap", bootstrap, "run", "risk", "--input-topic", names["in"], "--output-topic", names["out"],
            "--dlq-topic", names["dlq"], "--checkpoint-dir", str(checkpoints)]
    if managed_memory is not None:
        argv += ["--managed-memory", managed_memory]
    command = [sys.executable, "-m", "pipelines", *argv]
    with open(log_dir / "run.out", "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=ROOT)


def _wait_committed(bootstrap: str, group: str, topic: str, n: int, job: subprocess.Popen[bytes], log: Path) -> float:
    from pipelines.kafka.clients import committed_offsets

    start = time.monotonic()
    deadline = start + 600 + n / 500
    while time.monotonic() < deadline:
        if job.poll() is not None:
            raise RuntimeError(f"the job exited early:\n{log.read_text(errors='replace')[-3000:]}")
        if committed_offsets(bootstrap, group, topic, [0]).get(0, -1) >= n:
            return time.monotonic() - start
        time.sleep(1.0)
    raise RuntimeError(f"the job did not commit offset {n} of {topic} in time")


class FirstNewResult:
    """A read_committed consumer from the output topic's current end that notes when the first result of a
    new event arrives (wall clock) and that result's `scored_at`."""

    def __init__(self, bootstrap: str, topic: str, wanted: set[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from pipelines.kafka.clients import end_offsets

        self.seen_at: float | None = None
        self.scored_at_ms: int | None = None
        self.results = 0
        self._wanted = wanted
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                                   "isolation.level": "read_committed", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 10})
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in end_offsets(bootstrap, topic).items()])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.02)
            if msg is None or msg.error() is not None:
                continue
            self.results += 1
            result = msgspec.json.decode(msg.value() or b"{}")
            if result.get("event_id") in self._wanted and self.seen_at is None:
                self.seen_at = time.time()
                self.scored_at_ms = int(result["scored_at"])
                self._stop.set()

    def wait(self, timeout_s: float) -> None:
        """Wait for the first new result (or the timeout), then close the consumer."""
        self._thread.join(timeout_s)
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _log_times(log_dir: Path) -> dict[str, float]:
    """Wall-clock times (epoch s) of the Flink log lines that mark the job's restore."""
    marks = {
        "job_running": ("switched from state CREATED to RUNNING", None),
        "operator_initializing": ("risk-operator", "switched from DEPLOYING to INITIALIZING"),
        "operator_running": ("risk-operator", "switched from INITIALIZING to RUNNING"),
        "rocksdb_restore_start": ("Starting RocksDB incremental recovery", None),
        "rocksdb_restore_end": ("Finished RocksDB incremental recovery", None),
    }
    found: dict[str, float] = {}
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            stamp = LOG_TIME.match(line)
            if not stamp:
                continue
            for name, (first, second) in marks.items():
                if name not in found and first in line and (second is None or second in line):
                    moment = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
                    found[name] = time.mktime(moment.timetuple()) + int(stamp.group(2)) / 1000
    return found


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _stop(job: subprocess.Popen[bytes]) -> None:
    from pipelines.infra.processes import stop_process_group

    stop_process_group(job)


def measure(bootstrap: str, keys: int, work: Path, managed_memory: str | None = None) -> dict[str, Any]:
    """One crash-and-restart at `keys` distinct keys (see the module doc for what each number is)."""
    from pipelines.kafka.clients import ensure_topics, publish_records
    from pipelines.runtimes.flink.checkpoints import latest_checkpoint

    run = uuid.uuid4().hex[:8]
    names = {"in": f"rbench-{run}.in", "out": f"rbench-{run}.out", "dlq": f"rbench-{run}.dlq"}
    ensure_topics(bootstrap, list(names.values()))
    published = publish_records(bootstrap, names["in"], one_event_per_key(keys))
    print(f"[{keys} keys] published {published.sent} events in {published.seconds:.1f} s", flush=True)
    checkpoints = work / f"checkpoints-{run}"
    job = _start_run(bootstrap, names, checkpoints, work / f"log-{run}-first", managed_memory)
    group = f"streamscore-risk-{names['out']}"
    try:
        seconds = _wait_committed(bootstrap, group, names["in"], keys, job, work / f"log-{run}-first" / "run.out")
        time.sleep(3.0)  # let one more checkpoint complete (the state no longer changes)
        latest = latest_checkpoint(checkpoints)
        assert latest is not None, "no completed checkpoint"
        watcher = FirstNewResult(bootstrap, names["out"], {f"new-{j}" for j in range(NEW_EVENTS)})
        killed_at = time.time()
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(60)
    finally:
        _stop(job)
    latest = latest_checkpoint(checkpoints) or latest  # the one the restart restores
    job_folder = latest.path.parent
    checkpoint = {"number": latest.number, "job_folder_bytes": _du(job_folder),
                  "shared_bytes": _du(job_folder / "shared"),
                  "metadata_bytes": (latest.path / "_metadata").stat().st_size}
    restart_log = work / f"log-{run}-restart"
    restarted_at = time.time()
    job = _start_run(bootstrap, names, checkpoints, restart_log, managed_memory)
    try:
        publish_records(bootstrap, names["in"], new_events(NEW_EVENTS, keys))
        watcher.wait(600)
    finally:
        _stop(job)
    if watcher.seen_at is None or watcher.scored_at_ms is None:
        raise RuntimeError(f"no new result within 600 s after the restart; see {restart_log}")
    marks = _log_times(restart_log)
    span = lambda a, b: round(marks[b] - marks[a], 3) if a in marks and b in marks else None  # noqa: E731
    result = {
        "keys": keys,
        "managed_memory": managed_memory or "512m (the job's default)",
        "events_before_kill": keys,
        "first_run_seconds_to_commit_all": round(seconds, 1),
        "first_run_events_per_second": round(keys / seconds, 1),
        "checkpoint": checkpoint,
        "kill_to_first_new_result_s": round(watcher.seen_at - killed_at, 3),
        "restart_to_first_scored_s": round(watcher.scored_at_ms / 1000 - restarted_at, 3),
        "first_scored_to_visible_s": round(watcher.seen_at - watcher.scored_at_ms / 1000, 3),
        "restart_to_job_running_s": round(marks["job_running"] - restarted_at, 3) if "job_running" in marks else None,
        "operator_initializing_s": span("operator_initializing", "operator_running"),
        "rocksdb_restore_s": span("rocksdb_restore_start", "rocksdb_restore_end"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def _label(entry: dict[str, Any]) -> str:
    memory = entry.get("managed_memory", "")
    return f"{entry['keys']:,} keys, managed {memory.split()[0]}"


def _chart(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["kill_to_first_new_result_s", "restart_to_job_running_s", "operator_initializing_s",
               "rocksdb_restore_s"]
    labels = ["SIGKILL -> first new\ncommitted result", "restart -> job\nRUNNING", "operator\nINITIALIZING",
              "RocksDB\nrestore"]
    fig, (times, sizes) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(entries))
    for i, entry in enumerate(entries):
        xs = [k + i * width for k in range(len(metrics))]
        times.bar(xs, [entry.get(m) or 0 for m in metrics], width, label=_label(entry))
    times.set_xticks([k + width * (len(entries) - 1) / 2 for k in range(len(metrics))], labels, fontsize=8)
    times.set_ylabel("seconds")
    times.set_title("risk job crash recovery")
    times.legend()
    names = [_label(e).replace(" keys", "").replace(", managed ", "\n") for e in entries]
    sizes.bar(names, [e["checkpoint"]["job_folder_bytes"] / 1e6 for e in entries],
              color="#c96")
    sizes.set_ylabel("MB on disk")
    sizes.set_title("checkpoint folder")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Run the measurement for each key count and write the JSON + PNG report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000])
    parser.add_argument("--port", type=int, default=19392)
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints and Flink logs")
    parser.add_argument("--managed-memory", metavar="SIZE",
                        help="set the mini-cluster's taskmanager.memory.managed.size (RocksDB cache), e.g. 512m")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipelines.infra import broker

    bootstrap = broker.up(args.port).bootstrap
    out = RESULTS / "recovery_bench.json"
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("benchmark", "risk job crash recovery vs distinct keys (see benchmarks/recovery_bench.py)")
    report["notes"] = NOTES
    runs: dict[str, Any] = report.setdefault("runs", {})
    for keys in args.keys:
        work = Path(tempfile.mkdtemp(prefix=f"recovery-bench-{keys}-"))
        try:
            name = f"{keys}" if args.managed_memory is None else f"{keys}-managed-{args.managed_memory}"
            runs[name] = measure(bootstrap, keys, work, args.managed_memory)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"kept {work}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        _chart([runs[k] for k in sorted(runs, key=lambda k: (runs[k]["keys"], k))], RESULTS / "recovery_bench.png")
    print(f"wrote {out} and {RESULTS / 'recovery_bench.png'}")


if __name__ == "__main__":
    main()
