"""Benchmark of RocksVersionedStore against raw rocksdict, in one run, at several key counts.

    python benchmarks/state_bench.py [--keys 10000,1000000] [--ops 100000]
                                     [--out benchmarks/results/state_bench.json]

For each key count it loads every key once, then measures on uniformly random keys:

* ``get+put``: read the latest state and write a new one (what an operator does per event);
* ``as_of``: read one retained older version; ``as_of_time``: read the state at a past event time
  (through the event-time index) and at a time after the latest event (the fast path);

for three implementations: ``rocksdict raw`` (pre-encoded bytes, no codec: the passthrough limit),
``rocksdict + codec`` (the same msgpack value encoding as the store, but no versioning) and
``RocksVersionedStore`` (versions, event time, source coordinates, retention, time index). The ratios
store / raw are what to look at; absolute numbers depend on the machine. Writes JSON and, if
matplotlib is importable, a PNG bar chart next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rocksdict
from rocksdict import BlockBasedOptions, Cache, DBCompressionType, Options, Rdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state import MsgpackCodec, RetentionPolicy, RocksVersionedStore, SourceCoordinates

RETENTION = RetentionPolicy(max_versions=16)
HIDDEN = 16  # float32 features in the state value


def _value(i: int) -> dict[str, Any]:
    return {"count": i, "sum": i * 1.5, "hidden": np.full(HIDDEN, i % 97, dtype=np.float32)}


def _raw_options() -> Options:
    """The same RocksDB tuning RocksVersionedStore uses, for a fair baseline."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.increase_parallelism(max(2, os.cpu_count() or 2))
    options.set_max_background_jobs(2)
    options.set_write_buffer_size(64 << 20)
    options.set_compression_type(DBCompressionType.lz4())
    table = BlockBasedOptions()
    table.set_block_cache(Cache(64 << 20))
    table.set_bloom_filter(10, False)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    return options


def _timed(ops: int, body: Callable[[], None]) -> dict[str, float]:
    start = time.perf_counter()
    body()
    seconds = time.perf_counter() - start
    return {"ops": ops, "seconds": round(seconds, 4), "ops_per_s": round(ops / seconds, 1)}


def bench_raw(
    workdir: Path, keys: list[str], picks: np.ndarray[Any, Any], with_codec: bool
) -> dict[str, Any]:
    """rocksdict get/put of one value per key (no versions); with or without the msgpack codec."""
    codec = MsgpackCodec()
    payload = codec.encode(_value(1))
    db = Rdict(str(workdir / ("raw-codec" if with_codec else "raw")), _raw_options())
    kbs = [k.encode() for k in keys]
    results: dict[str, Any] = {}

    def load() -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for i, kb in enumerate(kbs):
            batch.put(kb, codec.encode(_value(i)) if with_codec else payload)
            if len(batch) >= 1000:
                db.write(batch)
                batch = rocksdict.WriteBatch(raw_mode=True)
        db.write(batch)

    results["load (batches of 1000)"] = _timed(len(kbs), load)

    def get_put() -> None:
        get, put = db.get, db.put
        for p in picks.tolist():
            kb = kbs[p]
            old = get(kb)
            if with_codec:
                value = codec.decode(old or b"")
                value["count"] += 1
                put(kb, codec.encode(value))
            else:
                put(kb, payload)

    results["get+put"] = _timed(len(picks), get_put)

    def point_read() -> None:
        get = db.get
        for p in picks.tolist():
            raw = get(kbs[p])
            if with_codec:
                codec.decode(raw or b"")

    # rocksdict has no versions: its comparable read for every as-of query is this one point read
    results["as_of"] = _timed(len(picks), point_read)
    results["as_of_time (before latest)"] = results["as_of"]
    results["as_of_time (after latest)"] = results["as_of"]
    db.close()
    return results


def bench_store(workdir: Path, keys: list[str], picks: np.ndarray[Any, Any], seed: int) -> dict[str, Any]:
    """RocksVersionedStore: load, get+put (new versions, retention pruning), as-of reads."""
    store = RocksVersionedStore(workdir / "store", retention=RETENTION)
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    clock = [1_700_000_000_000]

    def load() -> None:
        for start in range(0, len(keys), 1000):
            with store.write_batch():
                for i in range(start, min(start + 1000, len(keys))):
                    source = SourceCoordinates("bench", 0, i)
                    store.put(keys[i], _value(i), event_time=clock[0] + i, source=source)
        clock[0] += len(keys)

    results["load (batches of 1000)"] = _timed(len(keys), load)
    late = (rng.random(len(picks)) < 0.1) * rng.integers(1, 5_000, len(picks))  # 10% late events

    def get_put() -> None:
        get, put = store.get, store.put
        for j, (p, lateness) in enumerate(zip(picks.tolist(), late.tolist(), strict=True)):
            key = keys[p]
            current = get(key)
            value = current.value if current is not None else _value(p)
            value["count"] += 1
            put(key, value, event_time=clock[0] + j - lateness, source=SourceCoordinates("bench", 0, j))

    results["get+put"] = _timed(len(picks), get_put)
    clock[0] += len(picks)
    sample = picks.tolist()
    latest = {}  # (version, event time) of the latest version of every sampled key
    for p in set(sample):
        head = store.get(keys[p])
        assert head is not None
        latest[p] = (head.version, head.event_time)
    back = rng.integers(0, 4, len(sample)).tolist()
    oldest_kept = RETENTION.max_versions or 1

    def as_of() -> None:  # a retained version 0..3 below the latest
        for p, b in zip(sample, back, strict=True):
            version = latest[p][0]
            store.as_of(keys[p], max(1, version - b, version - oldest_kept + 1))

    def as_of_time() -> None:  # just before the latest event: answered through the time index
        for p in sample:
            store.as_of_time(keys[p], latest[p][1] - 1)

    def as_of_time_latest() -> None:
        t = clock[0] + 10**9
        for p in sample:
            store.as_of_time(keys[p], t)

    results["as_of"] = _timed(len(sample), as_of)
    results["as_of_time (before latest)"] = _timed(len(sample), as_of_time)
    results["as_of_time (after latest)"] = _timed(len(sample), as_of_time_latest)
    store.close()
    return results


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(key_counts: list[int], ops: int, seed: int, workdir: Path) -> dict[str, Any]:
    """Run every implementation at every key count; returns the JSON document."""
    report: dict[str, Any] = {
        "benchmark": "state_bench",
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "rocksdict": getattr(rocksdict, "__version__", "?")},
        "config": {"ops_per_measurement": ops, "seed": seed, "retention": str(RETENTION),
                   "value": f"dict(count, sum, float32[{HIDDEN}])",
                   "encoded_value_bytes": len(MsgpackCodec().encode(_value(1)))},
        "runs": [],
    }
    for n in key_counts:
        keys = [f"acct-{i:08d}" for i in range(n)]
        picks = np.random.default_rng(seed).integers(0, n, ops)
        run_dir = workdir / f"keys-{n}"
        run_dir.mkdir(parents=True)
        print(f"[{n} keys] rocksdict raw ...", flush=True)
        raw = bench_raw(run_dir, keys, picks, with_codec=False)
        print(f"[{n} keys] rocksdict + codec ...", flush=True)
        raw_codec = bench_raw(run_dir, keys, picks, with_codec=True)
        print(f"[{n} keys] RocksVersionedStore ...", flush=True)
        store = bench_store(run_dir, keys, picks, seed)
        entry: dict[str, Any] = {
            "keys": n,
            "results": {"rocksdict raw": raw, "rocksdict + codec": raw_codec, "RocksVersionedStore": store},
            "ratio_store_vs_raw": {
                op: round(store[op]["ops_per_s"] / raw[op]["ops_per_s"], 3) for op in store
            },
            "ratio_store_vs_codec": {
                op: round(store[op]["ops_per_s"] / raw_codec[op]["ops_per_s"], 3) for op in store
            },
            "disk_bytes": {name: _du(run_dir / d) for name, d in
                           (("rocksdict raw", "raw"), ("rocksdict + codec", "raw-codec"),
                            ("RocksVersionedStore", "store"))},
        }
        report["runs"].append(entry)
        for op in store:
            print(
                f"  {op:28s} raw {raw[op]['ops_per_s']:>11,.0f}/s"
                f"   +codec {raw_codec[op]['ops_per_s']:>11,.0f}/s   store {store[op]['ops_per_s']:>11,.0f}/s"
                f"   store/raw {entry['ratio_store_vs_raw'][op]:.2f}"
            )
        shutil.rmtree(run_dir)
    return report


def plot(report: dict[str, Any], path: Path) -> bool:
    """Grouped bar chart of ops/s per operation, one panel per key count; False if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = report["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 4.5), squeeze=False)
    for ax, entry in zip(axes[0], runs, strict=True):
        impls = list(entry["results"])
        ops = list(entry["results"]["RocksVersionedStore"])
        width = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            values = [entry["results"][impl][op]["ops_per_s"] for op in ops]
            ax.bar(np.arange(len(ops)) + i * width, values, width, label=impl)
        ax.set_xticks(np.arange(len(ops)) + width * (len(impls) - 1) / 2)
        ax.set_xticklabels(ops, rotation=20, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ops/s, log scale (higher is better)")
        ax.set_title(f"{entry['keys']:,} keys")
        ax.legend(fontsize=8)
    fig.suptitle("RocksVersionedStore vs rocksdict (same run)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", default="10000,1000000", help="comma-separated key counts")
    parser.add_argument("--ops", type=int, default=100_000, help="operations per measurement")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/state_bench.json"))
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    key_counts = [int(k) for k in args.keys.split(",") if k]
    workdir = Path(tempfile.mkdtemp(prefix="state-bench-", dir=args.workdir))
    try:
        report = run(key_counts, args.ops, args.seed, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    print(f"wrote {args.out}" + (f" and {png}" if plot(report, png) else " (no matplotlib: no PNG)"))


if __name__ == "__main__":
    main()
