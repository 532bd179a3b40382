"""Soak of the risk job: a steady stream of mixed valid and malformed events for a long time, one broker restart
half-way, memory and state size sampled; nothing lost, nothing doubled, no growth beyond the state bound.

`streamscore run risk` (unbounded, exactly-once, checkpoints every second, the Flink mini-cluster) reads a
2-partition topic fed at `--rate` events/s for `--minutes`: transactions of `--accounts` accounts (event time =
wall clock, so the idempotency window and the rules see a live stream; every 500th event is re-sent a minute
later: a producer retry, dropped), and `--bad-share` of malformed records of every record-level reason. Half-way
the project's broker is stopped and started again (the job fails over and resumes from its checkpoint; the
producer buffers and retries). Every 10 s: RSS of the job's JVM and of its Python client, the size of the job's
RocksDB working folder and of its newest checkpoint. After the input stops: read back read_committed, every
valid event has exactly one result and every malformed record one dead letter.

"No growth beyond the state bound": the keys are bounded (`--accounts`), each keeps at most `retention_versions`
versions and a window of event ids, so after warm-up RSS and RocksDB size must level off. Reported: the medians
of the second and the last fifth of the run and their ratio, and the least-squares slope over the second half.

Results: benchmarks/results/soak_bench.json and soak_bench.png.
Usage: python benchmarks/soak_bench.py [--minutes 30] [--rate 300] [--accounts 5000] [--bad-share 0.05] [--port 19892]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scale_bench import _du, checkpoint_size, java_descendants, rocksdb_dirs, rss_kb

from pipelines.infra import broker
from pipelines.kafka.clients import consume, ensure_topics

RESULTS = Path(__file__).resolve().parent / "results"
BAD: list[tuple[bytes, str]] = [
    (b"\xff\xfe not utf-8", "not_utf8"),
    (b'{"event_id": "e1", "account_id": ', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"event_id":"x","account_id":"acct-x"}', "missing_field"),
    (b'{"pad":"' + b"x" * 70_000 + b'"}', "oversized_message"),
]


def _valid(i: int, accounts: int, ts: int) -> tuple[bytes, bytes]:
    account = f"acct-{(i * 7919) % accounts:06d}"
    event = {"event_id": f"soak-{i}", "account_id": account, "amount": round(5.0 + (i * 37) % 900, 2),
             "currency": "EUR", "merchant_id": f"m-{i % 311}", "country": "DE" if i % 17 else "FR",
             "device_id": f"d-{(i * 13) % accounts}", "ts": ts}
    return account.encode(), msgspec.json.encode(event)


class Feeder(threading.Thread):
    """Publishes at `rate` events/s until stopped; counts what it sent (valid ids, malformed by reason)."""

    def __init__(self, bootstrap: str, topic: str, rate: int, accounts: int, bad_share: float) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                                  "message.timeout.ms": 600_000})
        self.topic, self.rate, self.accounts, self.bad_share = topic, rate, accounts, bad_share
        self.valid: set[str] = set()
        self.bad: Counter[str] = Counter()
        self.resent = 0
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self._retries: list[tuple[float, bytes, bytes]] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def run(self) -> None:
        i = 0
        bad_every = max(1, round(1 / self.bad_share)) if self.bad_share > 0 else 0
        start = time.monotonic()
        while not self.stop_event.is_set():
            due = start + i / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = time.monotonic()
            while self._retries and self._retries[0][0] <= now:
                _, key, value = self._retries.pop(0)
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                self.resent += 1
            if bad_every and i % bad_every == bad_every - 1:
                raw, reason = BAD[sum(self.bad.values()) % len(BAD)]
                self.producer.produce(self.topic, raw, on_delivery=self._delivered)
                self.bad[reason] += 1
            else:
                key, value = _valid(i, self.accounts, int(time.time() * 1000))
                self.producer.produce(self.topic, value, key, on_delivery=self._delivered)
                self.valid.add(f"soak-{i}")
                if i % 500 == 0:
                    self._retries.append((now + 60.0, key, value))
            self.producer.poll(0)
            i += 1
        self.producer.flush(600)


def _sample(job: subprocess.Popen[bytes], checkpoints: Path, started: float) -> dict[str, Any]:
    jvms = java_descendants(job.pid)
    dirs = set().union(*(rocksdb_dirs(p) for p in jvms)) if jvms else set()
    checkpoint = checkpoint_size(checkpoints)
    return {
        "t_s": round(time.monotonic() - started, 1),
        "jvm_rss_mb": round(sum(rss_kb(p) for p in jvms) / 1024, 1),
        "python_rss_mb": round(rss_kb(job.pid) / 1024, 1),
        "rocksdb_mb": round(sum(_du(d) for d in dirs) / 2**20, 2),
        "checkpoint_mb": round(checkpoint[1] / 2**20, 2) if checkpoint else None,
    }


def _trend(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [(s["t_s"], s[key]) for s in samples if s.get(key) is not None]
    n = len(values)
    if n < 10:
        return {}
    second = [v for _, v in values[n // 5: 2 * n // 5]]
    last = [v for _, v in values[4 * n // 5:]]
    half = values[n // 2:]
    mean_t = statistics.fmean(t for t, _ in half)
    mean_v = statistics.fmean(v for _, v in half)
    denominator = sum((t - mean_t) ** 2 for t, _ in half) or 1.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in half) / denominator
    return {"median_second_fifth": statistics.median(second), "median_last_fifth": statistics.median(last),
            "last_over_second": round(statistics.median(last) / max(statistics.median(second), 1e-9), 3),
            "slope_second_half_per_hour": round(slope * 3600, 3)}


def _chart(samples: list[dict[str, Any]], restart_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s["t_s"] / 60 for s in samples]
    top.plot(t, [s["jvm_rss_mb"] for s in samples], label="job JVM RSS (MB)")
    top.plot(t, [s["python_rss_mb"] for s in samples], label="run client RSS (MB)")
    bottom.plot(t, [s["rocksdb_mb"] for s in samples], label="RocksDB working folder (MB)")
    bottom.plot(t, [s["checkpoint_mb"] or 0 for s in samples], label="newest checkpoint (MB)")
    for axis in (top, bottom):
        axis.axvline(restart_s / 60, color="grey", linestyle="--", label="broker restart")
        axis.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("minutes")
    top.set_title("streamscore risk job soak: memory and state size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run the soak and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=300, help="events per second")
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--port", type=int, default=19892, help="its broker port (and the next one, the controller's)")
    parser.add_argument("--out", default="soak_bench")
    args = parser.parse_args()
    bootstrap = broker.up(args.port).bootstrap
    run = uuid.uuid4().hex[:8]
    topics = {"input": f"soak-{run}.in", "output": f"soak-{run}.out", "dlq": f"soak-{run}.dlq"}
    ensure_topics(bootstrap, [topics["input"]], partitions=2)
    ensure_topics(bootstrap, [topics["output"], topics["dlq"]])
    work = Path(os.environ.get("STREAMSCORE_HOME", "/tmp")) / "soak" / run
    checkpoints = work / "checkpoints"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "job.log"
    with open(log, "wb") as out:
        job = subprocess.Popen(
            [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "risk", "--input-topic",
             topics["input"], "--output-topic", topics["output"], "--dlq-topic", topics["dlq"],
             "--checkpoint-dir", str(checkpoints), "--checkpoint-interval", "1000"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    feeder = Feeder(bootstrap, topics["input"], args.rate, args.accounts, args.bad_share)
    started = time.monotonic()
    feeder.start()
    samples: list[dict[str, Any]] = []
    restart_at = started + args.minutes * 30  # half-way
    restart_s = args.minutes * 30
    restarted = False
    end = started + args.minutes * 60
    try:
        while time.monotonic() < end:
            if job.poll() is not None:
                raise RuntimeError("the job ended: " + log.read_text()[-3000:])
            if not restarted and time.monotonic() >= restart_at:
                print("restarting the broker", flush=True)
                broker.down(args.port)
                time.sleep(3)
                broker.up(args.port)
                restarted = True
            samples.append(_sample(job, checkpoints, started))
            print(json.dumps(samples[-1]), flush=True)
            time.sleep(10)
        feeder.stop_event.set()
        feeder.join(600)
        deadline = time.monotonic() + 600
        results: list[Any] = []
        letters: list[Any] = []
        while time.monotonic() < deadline:
            results = [r.value for r in consume(bootstrap, topics["output"], timeout_s=5)]
            letters = [r.value for r in consume(bootstrap, topics["dlq"], timeout_s=5)]
            if len(results) >= len(feeder.valid) and len(letters) >= sum(feeder.bad.values()):
                break
            time.sleep(10)
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
    ids = Counter(msgspec.json.decode(v)["event_id"] for v in results)
    reasons = Counter(msgspec.json.decode(v)["reason"] for v in letters)
    report = {
        "minutes": args.minutes, "rate": args.rate, "accounts": args.accounts, "bad_share": args.bad_share,
        "sent_valid": len(feeder.valid), "sent_bad": dict(feeder.bad), "resent": feeder.resent,
        "producer_errors": len(feeder.errors),
        "results": len(results), "distinct_results": len(ids),
        "missing": len(feeder.valid - set(ids)), "duplicated": sum(1 for c in ids.values() if c > 1),
        "dead_letters": dict(reasons), "dead_letters_match": reasons == feeder.bad,
        "broker_restart_at_s": restart_s,
        "trend": {key: _trend(samples, key) for key in ("jvm_rss_mb", "python_rss_mb", "rocksdb_mb", "checkpoint_mb")},
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2) + "\n")
    _chart(samples, restart_s, RESULTS / f"{args.out}.png")
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    ok = report["missing"] == 0 and report["duplicated"] == 0 and report["dead_letters_match"]
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
