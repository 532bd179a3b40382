"""State bytes written per event, and the faust runtime's scoring step's CPU cost per event, on a real RocksDB.

Runs the faust runtime's partition step (`pipelines.runtimes.faust.scoring.PartitionScorer`: decode, the risk
operator on a `RocksVersionedStore` inside one write batch per micro-batch, results, changelog records) in one
process, and reports per event:

- `rocksdb_bytes`: what RocksDB ingested (its `rocksdb.bytes.written` statistic: keys, values and write-batch
  framing of every put and delete), i.e. what reaches the WAL and memtable;
- `changelog_bytes`: keys + values of the changelog records the step published;
- `cpu_us`: the process CPU time of the step.

Scenarios (`risk`, the shipped config, retention 16):
- `quiet_batched`: the bench's seed-5 stream (20,000 events over 333 accounts, ~60 events each) in batches of 500
  (the runtime's default), heads and side entries written once per dirty key per batch;
- `quiet_unbatched`: the same, one event per batch (no coalescing: the per-event worst case, what Flink pays);
- `busy_unbatched`: one account whose idempotency window holds 10,000 ids (`--busy-events` events 5 s apart,
  all within 24 h), one event per batch; the figure is over its last 1,000 events (window full).

The acceptance line (issue 28): <= 1.5 KB per event for a ~50-event key, and a busy key within 2x of a quiet one.
The script runs on any streamscore checkout (it hooks RocksDB's options to turn statistics on), so the same
command measures the layout before: `PYTHONPATH=<old checkout> python benchmarks/state_bytes_bench.py --label
before --out /tmp/before.json`.

Usage: python benchmarks/state_bytes_bench.py [--events 20000] [--busy-events 11000] [--label after]
       [--out benchmarks/results/state_bytes_bench.json] [--compare before.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
_BYTES = re.compile(r"rocksdb\.bytes\.written COUNT : (\d+)")


def _hook_statistics() -> None:
    """Turn RocksDB statistics on in whichever module builds the store's options (old or new layout)."""
    import importlib

    for name in ("state._rocks_keys", "state.rocks"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = getattr(module, "_options", None)
        if original is None or getattr(original, "hooked", False):
            continue

        def hooked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            options = _original(*args, **kwargs)
            options.enable_statistics()
            return options

        hooked.hooked = True  # type: ignore[attr-defined]
        module._options = hooked


def _ingested(store: Any) -> int:
    found = _BYTES.search(store._db.property_value("rocksdb.options-statistics") or "")
    return int(found.group(1)) if found else 0


def _busy_events(n: int) -> list[bytes]:
    start = 1_767_225_600_000
    return [msgspec.json.encode({
        "event_id": f"busy-{i:06d}", "account_id": "acct-busy", "amount": 12.5 + i % 7, "currency": "EUR",
        "merchant_id": f"mch-{i % 13:05d}", "country": "DE", "device_id": "dev-busy", "ts": start + 5_000 * i,
    }) for i in range(n)]


def run(values: list[bytes], batch: int, measure_from: int = 0) -> dict[str, float]:
    """Score `values` through the faust step in batches of `batch`; per-event figures over events from
    `measure_from` on."""
    from operators.contract import OperatorContext
    from pipelines.registry import get
    from pipelines.runtimes.faust.scoring import PartitionScorer
    from state.rocks import RocksVersionedStore

    spec = get("risk")
    config = spec.load_config(None)
    operator = spec.operator_from_config(config)
    operator.open(OperatorContext())
    scorer = PartitionScorer(spec, operator, "bench.in")
    records = list(enumerate(values))
    with tempfile.TemporaryDirectory() as folder:
        store: Any = RocksVersionedStore(Path(folder) / "db", spec.state_codec(),
                                         retention=config.state.retention_policy())
        rocks_before = changelog = results = 0
        cpu = 0.0
        for start in range(0, len(records), batch):
            chunk = records[start:start + batch]
            if start == measure_from:
                rocks_before = _ingested(store)
            t0 = time.process_time()
            with store.write_batch():
                out = scorer.score(store, 0, chunk, 0)
            elapsed = time.process_time() - t0
            if start >= measure_from:
                cpu += elapsed
                changelog += sum(len(k or b"") + len(v or b"") for k, v in out.changelog)
                results += len(out.results)
        rocks = _ingested(store) - rocks_before
        store.close()
    operator.close()
    n = len(records) - measure_from
    return {"events": n, "results": results, "rocksdb_bytes_per_event": round(rocks / n, 1),
            "changelog_bytes_per_event": round(changelog / n, 1),
            "state_bytes_per_event": round((rocks + changelog) / n, 1), "cpu_us_per_event": round(cpu / n * 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--busy-events", type=int, default=11_000)
    parser.add_argument("--label", default="after")
    parser.add_argument("--out", type=Path, default=RESULTS / "state_bytes_bench.json")
    parser.add_argument("--compare", type=Path, help="a JSON this script wrote for another checkout (e.g. before)")
    args = parser.parse_args()
    _hook_statistics()
    from pipelines.kafka.publishing import synthetic_records

    quiet = [value for _, value in synthetic_records("risk", args.events, 5)]
    figures = {
        "quiet_batched": run(quiet, 500),
        "quiet_unbatched": run(quiet, 1),
        "busy_unbatched": run(_busy_events(args.busy_events), 1, measure_from=args.busy_events - 1_000),
    }
    import state

    report: dict[str, Any] = {"label": args.label, "code": str(Path(state.__file__).parents[1]), "events": args.events,
                              "busy_events": args.busy_events, "figures": figures}
    busy, calm = figures["busy_unbatched"]["state_bytes_per_event"], figures["quiet_unbatched"]["state_bytes_per_event"]
    report["busy_over_quiet"] = round(busy / calm, 2)
    runs = [report]
    if args.compare is not None:
        runs.insert(0, json.loads(args.compare.read_text()))
        report["compared_with"] = runs[0]["label"]
    print(json.dumps(runs, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(runs if args.compare is not None else report, indent=2) + "\n")
    if args.compare is not None:
        _plot(runs, args.out.with_suffix(".png"))


def _plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(runs[-1]["figures"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(runs)
    for i, run_ in enumerate(runs):
        xs = [j + i * width for j in range(len(scenarios))]
        axes[0].bar(xs, [run_["figures"][s]["state_bytes_per_event"] for s in scenarios], width, label=run_["label"])
        axes[1].bar(xs, [run_["figures"][s]["cpu_us_per_event"] for s in scenarios], width, label=run_["label"])
    for ax, title in zip(axes, ("state bytes written per event (RocksDB + changelog)",
                                "faust scoring step, CPU µs per event"), strict=True):
        ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(scenarios))], scenarios)
        ax.set_title(title, fontsize=10)
        ax.set_yscale("log")
        ax.legend()
    axes[0].axhline(1536, color="red", linestyle="--", linewidth=1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
