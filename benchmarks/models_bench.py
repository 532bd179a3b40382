"""Benchmark the registered models, FP32 vs INT8: speed (µs/event at batch 1, 64, 512 on one intra-op thread)
and quality (risk ROC-AUC / PR-AUC, reco HR@10 / MRR@10 on a fresh-seed holdout stream).

The INT8 variants are made on the fly (dynamic quantisation) in a temporary copy of the registry, so the
committed registry is never modified. Writes `benchmarks/results/models_bench.json` and `.png`.

    .venv/bin/python benchmarks/models_bench.py [--registry DIR] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.handle import ModelHandle
from models.quantization import quantize_registered
from models.registry import ModelRegistry
from pipelines.risk.training import risk_dataset
from pipelines.training import DEFAULT_EVAL_SEED, evaluate

BATCHES = (1, 64, 512)
MODELS = ("risk", "reco")


def _inputs(
    handle: ModelHandle, batch: int, rng: np.random.Generator, risk_rows: np.ndarray
) -> dict[str, np.ndarray]:
    if handle.name == "risk":
        return {"features": risk_rows[rng.integers(0, len(risk_rows), size=batch)]}
    catalog = int(handle.manifest["catalog_size"])
    seen = np.zeros((batch, catalog), dtype=np.float32)
    seen[np.repeat(np.arange(batch), 8), rng.integers(0, catalog, size=batch * 8)] = 1.0
    return {
        "item": rng.integers(0, catalog, size=batch).astype(np.int64),
        "hidden": rng.normal(0, 0.3, size=(batch, int(handle.manifest["hidden_size"]))).astype(np.float32),
        "seen": seen,
    }


def _timed_round(
    handle: ModelHandle, feeds: list[dict[str, np.ndarray]], batch: int, seconds: float
) -> float:
    calls = 0
    started = time.perf_counter()
    while True:
        handle.run(feeds[calls % len(feeds)])
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 5:
            return elapsed / calls / batch * 1e6


def _compare_speed(
    handles: dict[str, ModelHandle], batch: int, risk_rows: np.ndarray, budget_s: float, rounds: int = 7
) -> dict[str, float]:
    """µs/event of each handle at `batch`: rounds alternate between the handles (so background load hits
    them alike) and the best round counts (the least disturbed one)."""
    rng = np.random.default_rng(batch)
    first = next(iter(handles.values()))
    feeds = [_inputs(first, batch, rng, risk_rows) for _ in range(8)]
    for handle in handles.values():  # warm-up
        for feed in feeds:
            handle.run(feed)
    best = {label: float("inf") for label in handles}
    for _ in range(rounds):
        for label, handle in handles.items():
            best[label] = min(best[label], _timed_round(handle, feeds, batch, budget_s / rounds))
    return {label: round(value, 3) for label, value in best.items()}


def run(registry: ModelRegistry, out_dir: Path, *, quick: bool) -> dict[str, Any]:
    """Run the benchmark; returns the JSON payload (also written to `out_dir`)."""
    budget = 1.0 if quick else 4.0
    events = {"risk": 30_000 if quick else 100_000, "reco": 15_000 if quick else 50_000}
    with tempfile.TemporaryDirectory() as tmp:
        work = ModelRegistry(Path(tmp) / "registry")
        results: dict[str, Any] = {}
        from models.synthetic import generate_transactions

        risk_rows = risk_dataset(generate_transactions(20_000, DEFAULT_EVAL_SEED + 1)).features
        for name in MODELS:
            current = registry.current(name)
            if current is None:
                print(f"skip {name}: not in {registry.root}", file=sys.stderr)
                continue
            shutil.copytree(registry.root / name / str(current), work.root / name / str(current))
            (work.root / name / "CURRENT").write_text(f"{current}\n")
            int8_version = quantize_registered(work, name, current)
            versions = {"fp32": current, "int8": int8_version}
            handles = {label: work.load(name, version) for label, version in versions.items()}
            speeds = {str(b): _compare_speed(handles, b, risk_rows, budget) for b in BATCHES}
            entry: dict[str, Any] = {}
            for label, version in versions.items():
                speed = {b: speeds[b][label] for b in speeds}
                metrics = evaluate(name, version, DEFAULT_EVAL_SEED, events[name], registry=work)
                entry[label] = {
                    "ref": f"{name}@{version}" if label == "fp32" else f"{name}@{current}+int8",
                    "size_bytes": work.model_path(name, version).stat().st_size,
                    "us_per_event": speed,
                    "metrics": metrics,
                }
                print(f"{name} {label}: {speed} µs/event, {metrics}", flush=True)
            entry["int8_speedup"] = {
                b: round(entry["fp32"]["us_per_event"][b] / entry["int8"]["us_per_event"][b], 3)
                for b in entry["fp32"]["us_per_event"]
            }
            entry["int8_quality_delta"] = {
                k: round(entry["int8"]["metrics"][k] - entry["fp32"]["metrics"][k], 5)
                for k in entry["fp32"]["metrics"]
            }
            results[name] = entry
    payload = {
        "benchmark": "models_bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "onnxruntime": ort.__version__,
        "intra_op_threads": 1,
        "eval_seed": DEFAULT_EVAL_SEED,
        "eval_events": events,
        "quick": quick,
        "models": results,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "models_bench.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    _plot(payload, out_dir / "models_bench.png")
    return payload


def _plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = payload["models"]
    fig, axes = plt.subplots(1, 2 * len(models), figsize=(5 * 2 * len(models), 4.2))
    for i, (name, entry) in enumerate(models.items()):
        ax = axes[2 * i]
        x = np.arange(len(BATCHES))
        for j, label in enumerate(("fp32", "int8")):
            values = [entry[label]["us_per_event"][str(b)] for b in BATCHES]
            bars = ax.bar(x + j * 0.4, values, 0.4, label=label)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(x + 0.2, [f"batch {b}" for b in BATCHES])
        ax.set_ylabel("µs / event (1 intra-op thread)")
        ax.set_title(f"{name}: speed")
        ax.legend()
        ax = axes[2 * i + 1]
        keys = list(entry["fp32"]["metrics"])
        x = np.arange(len(keys))
        for j, label in enumerate(("fp32", "int8")):
            bars = ax.bar(x + j * 0.4, [entry[label]["metrics"][k] for k in keys], 0.4, label=label)
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_xticks(x + 0.2, keys, rotation=15, fontsize=8)
        ax.set_ylim(0, 1.15)
        ax.set_title(f"{name}: quality (seed {payload['eval_seed']})")
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"FP32 vs INT8 (dynamic) — onnxruntime {payload['onnxruntime']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registry", type=Path, default=None, help="registry (default: the package's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--quick", action="store_true", help="shorter timings and smaller holdouts")
    args = parser.parse_args(argv)
    registry = ModelRegistry(args.registry) if args.registry else ModelRegistry()
    run(registry, args.out, quick=args.quick)
    print(f"wrote {args.out / 'models_bench.json'} and {args.out / 'models_bench.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
