"""Scale figures of the risk pipeline: incremental vs full-recompute features, and job throughput vs distinct keys.

Part 1, `features` (offline, one Python thread, no broker): for one account with H prior transactions
(H = 1, 10, 100, 1000; a synthetic single-account history of `generate_transactions(..., accounts=1)`), the
CPU time of scoring one more event's feature vector
  (a) incrementally, the project's path: `operators.risk.features.update(state_H, tx)` on the account's O(1)
      `RiskFeatureState` after H events;
  (b) by full recompute, what a system without incremental state does: `features_from_history(history)` over
      the account's H+1 transactions (folds the same public functions from an empty `RiskFeatureState`, so
      the vector is exactly the same: checked for every H).
Both also "with state bytes": (a) decodes the account's state (msgpack), updates it and encodes the new
state; (b) decodes the stored history list, recomputes, and encodes the history with the new transaction
appended (what each system keeps per key). Times are `time.process_time` (CPU of this process, so other
processes on the shared machine weigh less), timeit-style: the median of `--repeat` runs of a loop sized to
take >= 0.2 s, divided by the loop count.

Part 2, `job`: `streamscore run risk --bounded --fresh --delivery at-least-once --managed-memory M` over a
fresh topic of N = K events, one per distinct account (K = `--keys`, default 10k and 1M; `--events-per-key E`
sends E passes over the keys, each later pass in a scattered key order). Events are synthetic transactions
(`pipelines.kafka.publishing.synthetic_records`, a pool of <= 50k tiled) with `event_id`, `account_id` and `ts`
rewritten (valid per the event contract). Measured:
- steady rate = 0.8 N / (t90 - t10) of the results' `scored_at` (first and last 10 % trimmed: no start-up,
  no final checkpoint); also the whole run's wall time and results / (last - first scored_at);
- outputs read back read_committed: exactly one result per event id (missing, duplicates), dead letters;
- RocksDB working set: the size of the job's local RocksDB folder (found from the JVM's open files), last
  sample before the job ended and the largest;
- checkpoint size: the newest completed `chk-*` + `shared/` under the checkpoint folder, last sample (a job
  that finishes deletes its checkpoints, so the folder is sampled while it runs: the final checkpoint may be
  missed);
- peak RSS of the job's JVM (`VmHWM` / `VmRSS` of the `java` descendant of the `streamscore run` process).
Job runs are merged into the JSON by "keys-managed memory", so a 10M-key run can be added later.

Usage: python benchmarks/scale_bench.py [--keys 10000,1000000[,10000000]] [--managed-memory 512m | 10000000=2g,...]
       [--skip-features] [--skip-job] [--histories 1,10,100,1000] [--port 19592] [--out scale_bench]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from operators.risk import features as risk_features  # noqa: E402
from operators.risk.features import RiskFeatureState, TransactionView  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_HISTORIES = (1, 10, 100, 1000)
DEFAULT_KEYS = (10_000, 1_000_000)
DEFAULT_MANAGED_MEMORY = "512m"  # the job's own default (see README: 128 MB slowed the job ~10x past ~400k keys)
LARGE_MANAGED_MEMORY = "2g"  # default above 1M keys: ~140 B of state per key, so 10M keys is ~1.4 GB of SST
POOL = 50_000  # synthetic transactions generated once and tiled (generation runs at ~10k events/s)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN_LOOP_S = 0.2


# ----------------------------------------------------------------------------------------------------------
# Part 1: incremental vs full recompute
# ----------------------------------------------------------------------------------------------------------


def features_from_history(history: Sequence[TransactionView]) -> np.ndarray:
    """The feature vector of the last transaction of `history`, recomputed from the account's whole history.

    What a system without incremental state does per event: start from an empty `RiskFeatureState` and fold
    every transaction in. The first len-1 steps use `advance` (no per-step array: the cheapest fold the
    public functions allow), the last one `update`, whose float32 vector is the one the model reads.
    """
    if not history:
        raise ValueError("features_from_history needs at least one transaction")
    state = RiskFeatureState()
    advance = risk_features.advance
    for tx in history[:-1]:
        state, _ = advance(state, tx)
    return risk_features.update(state, history[-1])[1]


def account_history(n: int, seed: int) -> list[TransactionView]:
    """`n` transactions of one synthetic account in time order (its merchants, devices, trips, ...)."""
    from models.synthetic.transactions import generate_transactions

    events = generate_transactions(n, seed, accounts=1, fraud_rate=0.0)
    return [TransactionView(amount=float(str(e["amount"])), merchant_id=str(e["merchant_id"]),
                            country=str(e["country"]), device_id=str(e["device_id"]), ts=int(str(e["ts"])))
            for e in events]


def _loop_size(timer: timeit.Timer) -> int:
    """How many calls make one timed loop take >= MIN_LOOP_S of CPU."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= MIN_LOOP_S:
            return number
        number = max(number * 2, int(number * MIN_LOOP_S * 1.2 / max(elapsed, 1e-6)))


def cpu_seconds_per_call(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """timeit-style CPU seconds per call of each function: loops sized to take >= MIN_LOOP_S, `repeat` rounds,
    the functions interleaved within each round (so a change in machine load hits them alike)."""
    timers = {name: timeit.Timer(fn, timer=time.process_time) for name, fn in fns.items()}
    numbers = {name: _loop_size(timer) for name, timer in timers.items()}
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return runs


def measure_features(histories: Sequence[int], repeat: int, seed: int) -> dict[str, Any]:
    """Part 1: µs of CPU per event, incremental vs full recompute, at each history length."""
    history = account_history(max(histories) + 1, seed)
    state_codec = msgspec.msgpack.Encoder()
    state_decoder = msgspec.msgpack.Decoder(RiskFeatureState)
    history_decoder = msgspec.msgpack.Decoder(list[TransactionView])
    rows: list[dict[str, Any]] = []
    for h in sorted(histories):
        prior, tx = history[:h], history[h]
        state = RiskFeatureState()
        for past in prior:
            state, _ = risk_features.update(state, past)
        incremental_vector = risk_features.update(state, tx)[1]
        full_vector = features_from_history(history[: h + 1])
        if not np.array_equal(incremental_vector, full_vector):
            raise AssertionError(f"H={h}: incremental {incremental_vector} != recomputed {full_vector}")
        state_bytes = state_codec.encode(state)
        history_bytes = state_codec.encode(prior)

        def incremental_with_bytes(state_bytes: bytes = state_bytes, tx: TransactionView = tx) -> bytes:
            new_state, _ = risk_features.update(state_decoder.decode(state_bytes), tx)
            return state_codec.encode(new_state)

        def full_with_bytes(history_bytes: bytes = history_bytes, tx: TransactionView = tx) -> bytes:
            past = history_decoder.decode(history_bytes)
            past.append(tx)
            features_from_history(past)
            return state_codec.encode(past)

        window = history[: h + 1]
        runs = cpu_seconds_per_call({
            "incremental": functools.partial(risk_features.update, state, tx),
            "full": functools.partial(features_from_history, window),
            "incremental_bytes": incremental_with_bytes,
            "full_bytes": full_with_bytes,
        }, repeat)
        inc, full, inc_b, full_b = (statistics.median(runs[k]) for k in
                                    ("incremental", "full", "incremental_bytes", "full_bytes"))
        row = {
            "history": h,
            "incremental_us": round(inc * 1e6, 3),
            "full_recompute_us": round(full * 1e6, 3),
            "ratio": round(full / inc, 1),
            "incremental_with_state_bytes_us": round(inc_b * 1e6, 3),
            "full_recompute_with_state_bytes_us": round(full_b * 1e6, 3),
            "ratio_with_state_bytes": round(full_b / inc_b, 1),
            "state_bytes": len(state_bytes),
            "history_bytes": len(history_bytes),
            "runs_us": {k: [round(t * 1e6, 3) for t in v] for k, v in runs.items()},
            "vectors_equal": True,
        }
        rows.append(row)
        print(f"[features] H={h:>5}: incremental {row['incremental_us']:8.2f} µs, full recompute "
              f"{row['full_recompute_us']:10.2f} µs ({row['ratio']}x); with state bytes "
              f"{row['incremental_with_state_bytes_us']:.2f} vs {row['full_recompute_with_state_bytes_us']:.2f} µs "
              f"({row['ratio_with_state_bytes']}x)", flush=True)
    incremental = [r["incremental_us"] for r in rows]
    flat = max(incremental) / min(incremental) if rows else None
    at_100 = next((r["ratio"] for r in rows if r["history"] == 100), None)
    return {
        "what": "CPU µs per event (time.process_time, one Python thread), median of the repeats (the four "
                "timings interleaved in each repeat)",
        "history_source": "models.synthetic.transactions.generate_transactions(n, seed, accounts=1, fraud_rate=0)",
        "seed": seed,
        "repeat": repeat,
        "incremental": "operators.risk.features.update(state after H events, tx)",
        "full_recompute": "features_from_history(H+1 transactions): advance folded from an empty state, update "
                          "on the last (the same vector, asserted for every H)",
        "with_state_bytes": "incremental: msgpack-decode the RiskFeatureState, update, encode the new state; full: "
                            "msgpack-decode the history list, recompute, encode the history + the new transaction",
        "rows": rows,
        "incremental_max_over_min": round(flat, 2) if flat else None,
        "target": "incremental flat in H (here: max/min over the H values <= 2) and >= 20x cheaper than full "
                  "recompute at H=100",
        "target_met": bool(at_100 is not None and at_100 >= 20 and flat is not None and flat <= 2.0),
    }


# ----------------------------------------------------------------------------------------------------------
# Part 2: job throughput vs distinct keys
# ----------------------------------------------------------------------------------------------------------


def _scatter(k: int) -> int:
    """A multiplier coprime with `k` (a permutation i -> i * m mod k that scatters consecutive keys)."""
    m = int(k * 0.6180339887) | 1
    while math.gcd(m, k) != 1:
        m += 2
    return m


def scale_records(n: int, keys: int, seed: int, run: str) -> Iterator[tuple[bytes, bytes]]:
    """`n` valid transactions over `keys` accounts: pass p (every `keys` events) covers each account once,
    pass 0 in key order, later passes scattered (so state reads hit keys all over the RocksDB key space).

    Fields other than the ids and time come from a tiled pool of synthetic transactions; `event_id` is
    `{run}-{i}`, `account_id` `acct-{key:08d}`, `ts` START_MS + i (strictly increasing)."""
    from pipelines.kafka.publishing import synthetic_events

    pool = synthetic_events("risk", min(n, POOL), seed)
    encode = msgspec.json.Encoder().encode
    multiplier = _scatter(keys)
    for i in range(n):
        position = i % keys
        key = position if i < keys else (position * multiplier + i // keys) % keys
        event = dict(pool[i % len(pool)])
        account = f"acct-{key:08d}"
        event["event_id"] = f"{run}-{i}"
        event["account_id"] = account
        event["ts"] = START_MS + i
        yield account.encode(), encode(event)


def publish(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]]) -> dict[str, float]:
    """Publish to the fresh `topic` with confluent-kafka directly (idempotent, lz4 like the project's producer,
    but 1 MB batches and no poll per record: ~2x `publish_records`' ~70k records/s here); every record is
    checked to have landed by the topic's end offset."""
    from confluent_kafka import Producer

    from pipelines.kafka.clients import end_offsets

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": "lz4",
                         "linger.ms": 20, "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000})
    producer.list_topics(topic, timeout=10)
    start = time.monotonic()
    sent = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        sent += 1
        if sent % 50_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.monotonic() - start
    landed = sum(end_offsets(bootstrap, topic).values())
    if remaining or landed != sent:
        raise RuntimeError(f"publishing to {topic}: sent {sent}, {remaining} unflushed, {landed} in the topic")
    return {"events": sent, "seconds": round(seconds, 2), "events_per_second": round(sent / max(seconds, 1e-9))}


def java_descendants(pid: int) -> list[int]:
    """Pids of `java` processes below `pid` (the mini-cluster JVM of a `streamscore run`)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.name() == "java":
                found.append(child.pid)
    return found


def rss_kb(pid: int) -> int:
    """The process's resident set in KiB (0 once it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss // 1024
    except psutil.Error:
        return 0


def _peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (the kernel's VmHWM: psutil exposes no peak RSS on Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def rocksdb_dirs(pid: int) -> set[Path]:
    """The RocksDB folders the process holds files open in (SST files, MANIFEST, LOG of each instance)."""
    dirs: set[Path] = set()
    try:
        files = psutil.Process(pid).open_files()
    except psutil.Error:
        return dirs
    for opened in files:
        target = Path(opened.path)
        name = target.name
        rocksdb_file = name.endswith(".sst") or name.startswith("MANIFEST-") or name == "LOG"
        if rocksdb_file and target.parent.name == "db":
            dirs.add(target.parent)
    return dirs


def checkpoint_size(checkpoint_dir: Path) -> tuple[int, int, int] | None:
    """(chk number, bytes of the newest completed chk-* + shared/, bytes of shared/) or None."""
    newest: tuple[float, int, Path] | None = None
    for metadata in checkpoint_dir.glob("*/chk-*/_metadata"):
        try:
            candidate = (metadata.stat().st_mtime, int(metadata.parent.name.removeprefix("chk-")), metadata.parent)
        except (OSError, ValueError):
            continue
        if newest is None or candidate[:2] > newest[:2]:
            newest = candidate
    if newest is None:
        return None
    shared = _du(newest[2].parent / "shared")
    return newest[1], _du(newest[2]) + shared, shared


@dataclass
class Samples:
    """What the sampler saw while the job ran (sizes in bytes, RSS in kB)."""

    java_pids: set[int] = field(default_factory=set)
    peak_rss_kb: int = 0
    peak_hwm_kb: int = 0
    rocksdb_dirs: set[str] = field(default_factory=set)
    rocksdb_last_bytes: int = 0
    rocksdb_max_bytes: int = 0
    checkpoint_number: int | None = None
    checkpoint_last_bytes: int = 0
    checkpoint_last_shared_bytes: int = 0
    checkpoint_max_bytes: int = 0
    samples: int = 0


class Sampler:
    """Polls the job's JVM (RSS, open RocksDB folders) every 0.5 s and the sizes on disk every 2 s."""

    def __init__(self, root_pid: int, checkpoint_dir: Path) -> None:
        self.samples = Samples()
        self._root = root_pid
        self._checkpoints = checkpoint_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        s = self.samples
        next_sizes = 0.0
        while not self._stop.wait(0.5):
            pids = java_descendants(self._root)
            s.java_pids.update(pids)
            dirs: set[Path] = set()
            for pid in pids:
                s.peak_rss_kb = max(s.peak_rss_kb, rss_kb(pid))
                s.peak_hwm_kb = max(s.peak_hwm_kb, _peak_rss_kb(pid))
                dirs |= rocksdb_dirs(pid)
            s.samples += 1
            if time.monotonic() < next_sizes:
                continue
            next_sizes = time.monotonic() + 2.0
            if dirs:
                s.rocksdb_dirs |= {str(d) for d in dirs}
                size = sum(_du(d) for d in dirs)
                if size:
                    s.rocksdb_last_bytes = size
                    s.rocksdb_max_bytes = max(s.rocksdb_max_bytes, size)
            checkpoint = checkpoint_size(self._checkpoints)
            if checkpoint is not None:
                s.checkpoint_number, s.checkpoint_last_bytes, s.checkpoint_last_shared_bytes = checkpoint
                s.checkpoint_max_bytes = max(s.checkpoint_max_bytes, checkpoint[1])

    def stop(self) -> Samples:
        """Stop sampling and return what was seen."""
        self._stop.set()
        self._thread.join(10)
        return self.samples


class _Result(msgspec.Struct):
    event_id: str
    scored_at: int


def read_results(bootstrap: str, topic: str, run: str, n: int) -> dict[str, Any]:
    """Read `topic` (read_committed) to its end: per-event counts and the sorted `scored_at` of the results."""
    from confluent_kafka import Consumer, TopicPartition

    from pipelines.kafka.clients import end_offsets

    ends = end_offsets(bootstrap, topic)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"scale-bench-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    decode = msgspec.json.Decoder(_Result).decode
    counts = bytearray(n)
    scored = array("q")
    unexpected = results = 0
    prefix = run + "-"
    remaining = {p: end for p, end in ends.items() if end > 0}
    last_new = time.monotonic()
    try:
        while remaining and time.monotonic() - last_new < 30:
            batch = consumer.consume(10_000, 1.0)
            for msg in batch:
                if msg.error() is not None:
                    continue
                last_new = time.monotonic()
                part, offset = msg.partition() or 0, msg.offset() or 0
                if part in remaining and offset + 1 >= remaining[part]:
                    del remaining[part]
                result = decode(msg.value() or b"{}")
                results += 1
                scored.append(result.scored_at)
                index = int(result.event_id[len(prefix):]) if result.event_id.startswith(prefix) else -1
                if 0 <= index < n:
                    counts[index] = min(255, counts[index] + 1)
                else:
                    unexpected += 1
    finally:
        consumer.close()
    per_event = np.frombuffer(bytes(counts), dtype=np.uint8)
    return {"results": results, "missing": int((per_event == 0).sum()),
            "duplicates": int(np.maximum(per_event.astype(np.int64) - 1, 0).sum()), "unexpected": unexpected,
            "scored_at": np.sort(np.frombuffer(scored.tobytes(), dtype=np.int64))}


def steady_rate(scored_at: np.ndarray) -> dict[str, Any]:
    """0.8 N / (t90 - t10) over the sorted `scored_at` (ms), N / (last - first), and the rate of each tenth of
    the results (with one event per key, the tenth d ran with d/10 of the keys already in state)."""
    n = len(scored_at)
    if n < 10:
        return {"steady_events_per_second": None, "first_to_last_events_per_second": None}
    t10, t90 = scored_at[int(0.1 * n)], scored_at[int(0.9 * n) - 1]
    span = (scored_at[-1] - scored_at[0]) / 1000
    bounds = [scored_at[min(n - 1, n * d // 10)] for d in range(11)]
    deciles = [round((n / 10) / max((bounds[d + 1] - bounds[d]) / 1000, 1e-3), 1) for d in range(10)]
    return {
        "steady_events_per_second": round(0.8 * n / max((t90 - t10) / 1000, 1e-3), 1),
        "t90_minus_t10_s": round((t90 - t10) / 1000, 3),
        "first_to_last_events_per_second": round(n / max(span, 1e-3), 1),
        "first_to_last_s": round(span, 3),
        "events_per_second_by_decile": deciles,
    }


def dead_letters(bootstrap: str, topic: str) -> int:
    """How many records the dead-letter topic holds (it is fresh per run)."""
    from pipelines.kafka.clients import end_offsets

    return sum(end_offsets(bootstrap, topic).values())


def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    """Delete a run's topics (a 1M-event input is ~100 MB on the broker's disk); best effort."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics(list(topics), operation_timeout=30)
    for future in futures.values():
        with contextlib.suppress(Exception):  # checked below: only a topic still listed is worth a word
            future.result(30)
    deadline = time.monotonic() + 10
    left = set(topics) & set(admin.list_topics(timeout=10).topics)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = set(topics) & set(admin.list_topics(timeout=10).topics)
    if left:
        print(f"could not delete topics {sorted(left)}", flush=True)


def run_job(bootstrap: str, keys: int, events_per_key: int, managed_memory: str, work: Path,
            seed: int, keep: bool = False) -> dict[str, Any]:
    """Part 2 for one key count: publish, run the bounded job, sample it, read and check its results (fresh
    topics, deleted afterwards unless `keep`)."""
    from pipelines.kafka.clients import ensure_topics

    run = f"sc{uuid.uuid4().hex[:8]}"
    names = {"in": f"scale-{run}.in", "out": f"scale-{run}.out", "dlq": f"scale-{run}.dlq"}
    ensure_topics(bootstrap, list(names.values()))
    try:
        return _run_job(bootstrap, keys, events_per_key, managed_memory, work, seed, run, names)
    finally:
        if not keep:
            delete_topics(bootstrap, list(names.values()))


def _run_job(bootstrap: str, keys: int, events_per_key: int, managed_memory: str, work: Path, seed: int, run: str,
             names: dict[str, str]) -> dict[str, Any]:
    """`run_job` on its topics `names`."""
    from pipelines.infra.processes import stop_process_group

    n = keys * events_per_key
    published = publish(bootstrap, names["in"], scale_records(n, keys, seed, run))
    print(f"[job {keys:,} keys] generated and published {n:,} events in {published['seconds']} s "
          f"({published['events_per_second']:,.0f}/s)", flush=True)
    checkpoints = work / "checkpoints"
    log_dir = work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [str(ROOT / ".venv" / "bin" / "streamscore"), "--bootstrap", bootstrap, "run", "risk", "--bounded",
               "--fresh", "--delivery", "at-least-once", "--managed-memory", managed_memory,
               "--input-topic", names["in"], "--output-topic", names["out"], "--dlq-topic", names["dlq"],
               "--checkpoint-dir", str(checkpoints)]
    if not Path(command[0]).exists():
        command[:1] = [sys.executable, "-m", "pipelines"]
    env = dict(os.environ, FLINK_LOG_DIR=str(log_dir))
    load_before = os.getloadavg()
    started = time.monotonic()
    with open(log_dir / "run.out", "wb") as out:
        job = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                               cwd=ROOT)
    sampler = Sampler(job.pid, checkpoints)
    try:
        job.wait(timeout=900 + n / 200)
    except subprocess.TimeoutExpired:
        print(f"[job {keys:,} keys] timed out; stopping it", flush=True)
    finally:
        samples = sampler.stop()
        stop_process_group(job)
    wall = time.monotonic() - started
    if job.returncode != 0:
        tail = (log_dir / "run.out").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"streamscore run exited {job.returncode} after {wall:.0f} s:\n{tail}")
    read = read_results(bootstrap, names["out"], run, n)
    rates = steady_rate(read.pop("scored_at"))
    check = {"expected": n, **read, "dead_letters": dead_letters(bootstrap, names["dlq"])}
    check["ok"] = check["results"] == n and check["missing"] == 0 and check["duplicates"] == 0 and \
        check["unexpected"] == 0 and check["dead_letters"] == 0
    mb = 1024 * 1024
    result = {
        "keys": keys,
        "events": n,
        "events_per_key": events_per_key,
        "managed_memory": managed_memory,
        **rates,
        "wall_s": round(wall, 1),
        "check": check,
        "rocksdb_working_set_mb": round(samples.rocksdb_last_bytes / mb, 1),
        "rocksdb_working_set_max_mb": round(samples.rocksdb_max_bytes / mb, 1),
        "checkpoint_mb": round(samples.checkpoint_last_bytes / mb, 1),
        "checkpoint_shared_mb": round(samples.checkpoint_last_shared_bytes / mb, 1),
        "checkpoint_max_mb": round(samples.checkpoint_max_bytes / mb, 1),
        "checkpoint_number": samples.checkpoint_number,
        "jvm_peak_rss_mb": round(max(samples.peak_hwm_kb, samples.peak_rss_kb) / 1024, 1),
        "jvm_pids": sorted(samples.java_pids),
        "rocksdb_dirs": sorted(samples.rocksdb_dirs),
        "publish": published,
        "command": " ".join(["streamscore", *command[1:]]).replace(str(work), "WORK"),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"[job {keys:,} keys] steady {result['steady_events_per_second']} events/s, wall {result['wall_s']} s, "
          f"check ok={check['ok']} (results {check['results']:,}, missing {check['missing']}, duplicates "
          f"{check['duplicates']}, dead letters {check['dead_letters']}), RocksDB {result['rocksdb_working_set_mb']} "
          f"MB, checkpoint {result['checkpoint_mb']} MB (chk-{samples.checkpoint_number}), JVM peak RSS "
          f"{result['jvm_peak_rss_mb']} MB, managed memory {managed_memory}", flush=True)
    return result


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------


def chart(report: dict[str, Any], path: Path) -> None:
    """Four panels: µs/event vs history; steady events/s per key count; events/s along each run (keys in
    state); RocksDB, checkpoint and JVM sizes per key count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((feat, rate), (along, sizes)) = plt.subplots(2, 2, figsize=(13, 8.5))
    rows = (report.get("features") or {}).get("rows", [])
    if rows:
        hs = [r["history"] for r in rows]
        feat.plot(hs, [r["incremental_us"] for r in rows], "o-", label="incremental: update(state, tx)")
        feat.plot(hs, [r["full_recompute_us"] for r in rows], "s-", label="full recompute over the H+1 transactions")
        feat.plot(hs, [r["incremental_with_state_bytes_us"] for r in rows], "o--", alpha=0.6,
                  label="incremental + state (de)serialisation")
        feat.plot(hs, [r["full_recompute_with_state_bytes_us"] for r in rows], "s--", alpha=0.6,
                  label="recompute + history (de)serialisation")
        for r in rows:
            feat.annotate(f"{r['ratio']:g}x", (r["history"], r["full_recompute_us"]), textcoords="offset points",
                          xytext=(6, -10), fontsize=8)
        feat.set_xscale("log")
        feat.set_yscale("log")
        feat.set_xlabel("prior transactions of the account (H)")
        feat.set_ylabel("CPU µs per event")
        feat.set_title("risk features: incremental vs full recompute (ratio)")
        feat.legend(fontsize=7)
    runs = sorted((report.get("job_runs") or {}).values(),
                  key=lambda r: (r["keys"], r["events_per_key"], r["managed_memory"]))
    if runs:
        labels = [f"{r['keys']:,} keys\n{r['managed_memory']}" + (f", {r['events_per_key']} ev/key"
                  if r["events_per_key"] != 1 else "") for r in runs]
        bars = rate.bar(labels, [r["steady_events_per_second"] or 0 for r in runs], color="#4c72b0")
        for bar, r in zip(bars, runs, strict=True):
            rate.annotate(f"{r['steady_events_per_second'] or 0:,.0f}/s" + ("" if r["check"]["ok"] else " FAILED"),
                          (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                          fontsize=8)
        rate.set_ylabel("steady events/s (scored_at, 10-90 %)")
        rate.set_title("streamscore run risk --bounded, at-least-once")
        for label, r in zip(labels, runs, strict=True):
            deciles = r.get("events_per_second_by_decile") or []
            xs = [r["events"] * (d + 0.5) / 10 for d in range(len(deciles))]
            along.plot(xs, deciles, "o-", label=label.replace("\n", ", managed "))
        along.set_xscale("log")
        along.set_ylim(bottom=0)
        along.set_xlabel("events processed (one event per key: keys in state)")
        along.set_ylabel("events/s in each tenth of the run")
        along.set_title("rate along the run")
        along.legend(fontsize=7)
        x = np.arange(len(runs))
        width = 0.27
        series = [("rocksdb_working_set_mb", "RocksDB working set (local SST files)"),
                  ("checkpoint_mb", "checkpoint (newest chk + shared/)"), ("jvm_peak_rss_mb", "JVM peak RSS")]
        for i, (key, name) in enumerate(series):
            values = [max(r[key], 0.01) for r in runs]
            group = sizes.bar(x + (i - 1) * width, values, width, label=name)
            for bar, value in zip(group, values, strict=True):
                sizes.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                               (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                               fontsize=7)
        sizes.set_yscale("log")
        sizes.set_xticks(x, labels)
        sizes.set_ylabel("MB")
        sizes.set_title("state on disk and JVM memory")
        sizes.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict[str, Any]:
    """The machine and versions the figures were measured on."""
    commit = subprocess.run(["git", "log", "-1", "--format=%h"], capture_output=True, text=True, cwd=ROOT,
                            check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT, check=False).stdout.strip()
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "git_commit": commit + (" (uncommitted changes)" if dirty else ""),
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def _memory_for(keys: int, spec: str | None) -> str:
    """The managed memory of a key count: `--managed-memory` (one size, or `KEYS=SIZE,...`), else the default
    (512m up to 1M keys, 2g above)."""
    if spec:
        if "=" not in spec:
            return spec
        table = dict(item.split("=", 1) for item in spec.split(","))
        if str(keys) in table:
            return table[str(keys)]
    return DEFAULT_MANAGED_MEMORY if keys <= 1_000_000 else LARGE_MANAGED_MEMORY


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def main() -> None:
    """Run the parts asked for and write benchmarks/results/OUT.json + .png."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=_ints, default=list(DEFAULT_KEYS), help="comma-separated key counts")
    parser.add_argument("--events-per-key", type=int, default=1)
    parser.add_argument("--managed-memory", metavar="SIZE|KEYS=SIZE,...",
                        help="managed memory of the job (default 512m up to 1M keys, 2g above)")
    parser.add_argument("--histories", type=_ints, default=list(DEFAULT_HISTORIES))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--port", type=int, default=19592)
    parser.add_argument("--out", default="scale_bench", help="results name under benchmarks/results/")
    parser.add_argument("--keep", action="store_true", help="keep the job folders (checkpoints, Flink logs)")
    args = parser.parse_args()

    out = RESULTS / f"{args.out}.json"
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    report["benchmark"] = "risk scale figures: incremental vs full-recompute features, job throughput vs keys"
    report["command"] = " ".join(["scale_bench.py", *sys.argv[1:]])
    report["machine"] = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.skip_features:
        report["features"] = measure_features(args.histories, args.repeat, args.seed)
        out.write_text(json.dumps(report, indent=2) + "\n")
    if not args.skip_job:
        from pipelines.infra import broker

        was_running = broker.status(args.port).running
        bootstrap = broker.up(args.port).bootstrap
        runs: dict[str, Any] = report.setdefault("job_runs", {})
        try:
            _job_runs(args, bootstrap, runs, report, out)
        finally:
            if not was_running:
                broker.down(args.port)
    out.write_text(json.dumps(report, indent=2) + "\n")
    chart(report, RESULTS / f"{args.out}.png")
    print(f"wrote {out} and {RESULTS / (args.out + '.png')}")


def _job_runs(args: argparse.Namespace, bootstrap: str, runs: dict[str, Any], report: dict[str, Any],
              out: Path) -> None:
    """Part 2 for each key count of `args.keys`, the report rewritten after each."""
    for keys in args.keys:
        memory = _memory_for(keys, args.managed_memory)
        work = Path(tempfile.mkdtemp(prefix=f"scale-bench-{keys}-"))
        try:
            name = f"{keys}-events-per-key-{args.events_per_key}-managed-{memory}"
            runs[name] = run_job(bootstrap, keys, args.events_per_key, memory, work, args.seed, args.keep)
        finally:
            if args.keep:
                print(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        chart(report, RESULTS / f"{args.out}.png")


if __name__ == "__main__":
    main()
