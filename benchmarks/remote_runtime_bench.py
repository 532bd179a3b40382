"""A model server slowed beyond its deadline, seen where users see it: send -> scored through a runtime.

For each runtime (the faust worker, the Flink job's buffered operator; at-least-once, risk), three paced runs of
the same events at `--rate` events/s for `--seconds`, every transaction routed to `--model`:

- `local`: the model in-process (no backend): the runtime's own send -> scored;
- `remote`: the same model on a model server (v2 gRPC, `streamscore`'s MLServer), answering;
- `frozen`: the same server, frozen (SIGSTOP) once the job is up and before the paced events, with a
  `DEADLINE_MS` deadline and the breaker at its defaults: the batches fall back to the model in-process.

The acceptance bound (issue 31) is frozen p99 <= `DEADLINE_MS` + the local run's p99. The frozen run's
percentiles include the breaker's detection (its first `breaker_failures` batches wait out the deadline) and its
half-open probes (one batch every `breaker_reset_ms`). Each run is checked: one result per event, and the count
of results scored remotely and by the fallback. Writes `benchmarks/results/remote_runtime_bench.json` and `.png`.

    .venv/bin/python benchmarks/remote_runtime_bench.py [--rate 1000] [--seconds 30] [--runtimes faust,flink]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runs import Bench, LatencyRecord, latency_run, read_all
from peers.systems import ROOT, RunTarget, System

from models.registry import ModelRegistry
from pipelines.infra import broker
from pipelines.infra.model_server import ModelServer
from pipelines.kafka.publishing import synthetic_records

DEADLINE_MS = 50
RUNTIMES = ("faust", "flink")
MODES = ("local", "remote", "frozen")
SEED = 13


class _Scored(msgspec.Struct):
    model: str = ""
    backend: str = ""
    fallback: bool = False


def _config(path: Path, model: str, server: ModelServer | None) -> Path:
    """The shipped risk YAML with every transaction routed to `model` (on `server` if given)."""
    config = yaml.safe_load((ROOT / "pipelines/risk/risk.yaml").read_text(encoding="utf-8"))
    version = ModelRegistry().current(model)
    route: dict[str, Any] = {"code": "all", "when": {"amount": {"at_least": 0.0}}, "model": f"{model}@{version}"}
    if server is not None:
        config["backends"] = {"server": {"url": server.grpc_target, "protocol": "grpc", "deadline_ms": DEADLINE_MS}}
        route["backend"] = "server"
    config["routes"] = [route]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _system(runtime: str, config: Path) -> System:
    def command(t: RunTarget) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "streamscore"), "--bootstrap", t.bootstrap, "run", "risk",
               "--runtime", runtime, "--delivery", "at-least-once", "--config", str(config),
               "--input-topic", t.input_topic, "--output-topic", t.output_topic, "--dlq-topic", f"{t.output_topic}.dlq"]
        if runtime == "faust":
            return [*cmd, "--state-dir", str(t.workdir / "state")]
        return [*cmd, "--fresh", "--operator", "buffered", "--checkpoint-dir", str(t.workdir / "checkpoints")]

    return System(f"{runtime}-{config.stem}", "risk", f"risk on {runtime}, {config.stem}", (0, 0), (0, 0), command)


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    array = np.array(values)
    return {"p50_ms": float(np.percentile(array, 50)), "p99_ms": float(np.percentile(array, 99)),
            "max_ms": float(array.max())}


def _scored_by(bench: Bench, system: System, tag: str) -> dict[str, int]:
    """How many results the run's output holds per (scored remotely | fallback | in-process)."""
    target = bench.target(system, "", tag, 0)
    counts = {"remote": 0, "fallback": 0, "in_process": 0}
    for output in read_all(bench.bootstrap, target.output_topic, timeout_s=30):
        scored = msgspec.json.decode(output.value, type=_Scored)
        counts["fallback" if scored.fallback else "remote" if scored.backend else "in_process"] += 1
    return counts


def run(bench: Bench, runtime: str, mode: str, model: str, server: ModelServer, rate: float, seconds: float,
        workdir: Path) -> dict[str, Any]:
    """One paced run of `runtime` in `mode` (see the module docstring)."""
    config = _config(workdir / f"risk-{mode}.yaml", model, None if mode == "local" else server)
    system = _system(runtime, config)
    n = round(rate * seconds)
    warmup, settling = 2_000, round(rate * 3)
    records = list(synthetic_records("risk", warmup + settling + n, SEED))
    ids = [str(msgspec.json.decode(v)["event_id"]) for _, v in records]
    freeze: Callable[[], None] | None = None
    if mode == "frozen":
        assert server.process is not None
        pid = server.process.pid
        freeze = lambda: os.kill(pid, signal.SIGSTOP)  # noqa: E731
    tag = f"{runtime}-{mode}"
    try:
        record: LatencyRecord = latency_run(bench, system, records, ids, warmup, rate, settling, tag=tag,
                                            on_ready=freeze)
    finally:
        if mode == "frozen":
            os.kill(server.process.pid, signal.SIGCONT)  # type: ignore[union-attr]
    row: dict[str, Any] = {"runtime": runtime, "mode": mode, "rate": rate, "events": record.events,
                           "send_to_scored": _percentiles(record.send_to_scored_ms),
                           "ok": bool(record.check and record.check.ok and not record.error),
                           "missing": record.check.missing if record.check else None,
                           "duplicates": record.check.duplicates if record.check else None,
                           "error": record.error[:2000], "scored_by": _scored_by(bench, system, tag)}
    print(json.dumps(row), flush=True)
    return row


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runtimes = sorted({r["runtime"] for r in rows})
    fig, axes = plt.subplots(1, len(runtimes), figsize=(5 * len(runtimes), 4), squeeze=False)
    for axis, runtime in zip(axes[0], runtimes, strict=True):
        mine = {r["mode"]: r for r in rows if r["runtime"] == runtime}
        modes = [m for m in MODES if m in mine]
        x = np.arange(len(modes))
        axis.bar(x - 0.2, [mine[m]["send_to_scored"].get("p50_ms", 0) for m in modes], 0.4, label="p50")
        axis.bar(x + 0.2, [mine[m]["send_to_scored"].get("p99_ms", 0) for m in modes], 0.4, label="p99")
        if "local" in mine and mine["local"]["send_to_scored"]:
            bound = DEADLINE_MS + mine["local"]["send_to_scored"]["p99_ms"]
            axis.axhline(bound, color="red", linestyle="--", label=f"deadline + local p99 ({bound:.0f} ms)")
        axis.set_xticks(x, modes)
        axis.set_ylabel("send -> scored (ms)")
        axis.set_title(f"{runtime}, {rows[0]['rate']:,.0f} events/s, deadline {DEADLINE_MS} ms")
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run every (runtime, mode) and write the JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="paced events/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="paced seconds per run")
    parser.add_argument("--model", default="risk-large")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--port", type=int, default=19192, help="broker port (started if not running)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    was_running = broker.status(args.port).running
    bootstrap = broker.up(args.port).bootstrap
    run_id = uuid.uuid4().hex[:8]
    workdir = ROOT / ".bench" / "runs" / f"remote-{run_id}"
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(bootstrap, run_id, workdir)
    server = ModelServer([args.model]).start()
    rows = []
    try:
        server.wait_ready()
        for runtime in args.runtimes.split(","):
            for mode in MODES:
                rows.append(run(bench, runtime, mode, args.model, server, args.rate, args.seconds, workdir))
    finally:
        server.stop()
        if not was_running:
            broker.down(args.port)
    for runtime in {r["runtime"] for r in rows}:
        mine = {r["mode"]: r for r in rows if r["runtime"] == runtime}
        if mine.get("local", {}).get("send_to_scored") and mine.get("frozen", {}).get("send_to_scored"):
            bound = DEADLINE_MS + mine["local"]["send_to_scored"]["p99_ms"]
            mine["frozen"]["bound_ms"] = bound
            mine["frozen"]["p99_within_bound"] = mine["frozen"]["send_to_scored"]["p99_ms"] <= bound
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"model": args.model, "deadline_ms": DEADLINE_MS, "protocol": "grpc", "rate": args.rate,
              "seconds": args.seconds, "machine": platform.platform(),
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "runs": rows}
    (args.out / "remote_runtime_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(rows, args.out / "remote_runtime_bench.png")
    print(f"wrote {args.out / 'remote_runtime_bench.json'} and .png")


if __name__ == "__main__":
    main()
