"""The systems `bench.py` runs: how to start each one (bounded for throughput, unbounded for latency).

Every system reads one input topic and writes one result (or copy) per input record to its output topic.
`sizes` are the two points of its throughput slope: a run over the large input, measured from its small-th to
its last result (past the job's warm-up), chosen so that this window lasts several seconds at today's speed
within the `make bench` budget (each run also pays a Flink job's ~20-30 s start-up on the shared 2-core
machine). The faust runtime runs with micro-batching on (its default: up to 500 events per batch and
transaction) and off (`--batch-size 1`: one transaction, or one flush, per event).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "benchmarks"
PEERS_DIR = BENCH_DIR / "peers"


@dataclass(frozen=True)
class RunTarget:
    """Where one run of a system reads and writes, and its private folder (checkpoints, state)."""

    bootstrap: str
    input_topic: str
    output_topic: str
    workdir: Path
    count: int  # records to process before stopping; 0: run until stopped (latency runs)
    quix_python: Path | None = None

    @property
    def bounded(self) -> bool:
        """Whether the run ends by itself after its input."""
        return self.count > 0


@dataclass(frozen=True)
class System:
    """One benchmarked system: its name, pipeline, slope sizes (full and `--quick`) and command line."""

    name: str
    pipeline: str
    description: str
    sizes: tuple[int, int]
    quick_sizes: tuple[int, int]
    command: Callable[[RunTarget], list[str]]
    scores: bool = True  # results carry `scored_at` (passthroughs copy the input instead)
    exactly_once: bool = False
    needs_quix: bool = False
    low_load: bool = False  # also measured at `bench.LOW_LOAD_FRACTION` of its throughput (latency when idle-ish)


def _python_passthrough(t: RunTarget) -> list[str]:
    return [sys.executable, str(PEERS_DIR / "python_passthrough.py"), "--bootstrap", t.bootstrap,
            "--input", t.input_topic, "--output", t.output_topic, "--group", f"{t.output_topic}.group",
            "--count", str(t.count)]


def _flink_module(module: str) -> Callable[[RunTarget], list[str]]:
    def command(t: RunTarget) -> list[str]:
        cmd = [sys.executable, "-m", module, "--bootstrap", t.bootstrap, "--input", t.input_topic,
               "--output", t.output_topic, "--checkpoint-dir", str(t.workdir / "checkpoints")]
        return [*cmd, "--bounded"] if t.bounded else cmd

    return command


def _quix(t: RunTarget) -> list[str]:
    if t.quix_python is None:
        raise RuntimeError("the quix system needs its venv (peers.quix_venv.ensure_venv)")
    return [str(t.quix_python), str(PEERS_DIR / "quix_app.py"), "--bootstrap", t.bootstrap,
            "--input", t.input_topic, "--output", t.output_topic, "--group", f"{t.output_topic}.group",
            "--state-dir", str(t.workdir / "state"), "--count", str(t.count)]


def _streamscore(pipeline: str, delivery: str, operator: str = "buffered") -> Callable[[RunTarget], list[str]]:
    def command(t: RunTarget) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "streamscore"), "--bootstrap", t.bootstrap, "run", pipeline,
               "--fresh", "--delivery", delivery, "--operator", operator, "--input-topic", t.input_topic,
               "--output-topic", t.output_topic,
               "--dlq-topic", f"{t.output_topic}.dlq", "--checkpoint-dir", str(t.workdir / "checkpoints")]
        return [*cmd, "--bounded"] if t.bounded else cmd

    return command


def _faust(pipeline: str, delivery: str, batch_size: int) -> Callable[[RunTarget], list[str]]:
    def command(t: RunTarget) -> list[str]:
        cmd = [str(Path(sys.executable).parent / "streamscore"), "--bootstrap", t.bootstrap, "run", pipeline,
               "--runtime", "faust", "--delivery", delivery, "--batch-size", str(batch_size),
               "--input-topic", t.input_topic, "--output-topic", t.output_topic,
               "--dlq-topic", f"{t.output_topic}.dlq", "--state-dir", str(t.workdir / "state")]
        return [*cmd, "--bounded"] if t.bounded else cmd

    return command


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System("python-passthrough", "risk", "confluent-kafka consume -> produce, no processing (the Python limit)",
               (30_000, 150_000), (6_000, 30_000), _python_passthrough, scores=False),
        System("flink-passthrough", "risk",
               "PyFlink, the job's Kafka SQL tables + identity Python map, thread mode (the Flink limit)",
               (30_000, 180_000), (2_000, 10_000), _flink_module("peers.flink_passthrough"), scores=False),
        System("naive-pyflink", "risk",
               "risk as a PyFlink newcomer writes it (process mode, value-only KafkaSource, pickled ValueState)",
               (3_000, 15_000), (1_000, 4_000), _flink_module("peers.naive_pyflink")),
        System("quix", "risk", "risk as a Quix Streams 3.28 app (stateful apply, RocksDB state, at-least-once)",
               (15_000, 75_000), (2_000, 10_000), _quix, needs_quix=True, low_load=True),
        System("streamscore-risk-alo", "risk", "streamscore run risk --bounded --delivery at-least-once "
               "(buffered Java operator, one Python call per buffer)",
               (15_000, 75_000), (2_000, 10_000), _streamscore("risk", "at-least-once"), low_load=True),
        System("streamscore-risk-eos", "risk", "streamscore run risk --bounded --delivery exactly-once (buffered)",
               (15_000, 75_000), (2_000, 10_000), _streamscore("risk", "exactly-once"), exactly_once=True),
        System("streamscore-reco", "reco", "streamscore run reco --bounded --delivery at-least-once (clicks, "
               "buffered)", (10_000, 50_000), (1_000, 4_000), _streamscore("reco", "at-least-once")),
        System("streamscore-risk-alo-per-record", "risk", "streamscore run risk --bounded --delivery at-least-once "
               "--operator per-record (PyFlink keyed function, one Python call per record)",
               (5_000, 25_000), (1_000, 4_000), _streamscore("risk", "at-least-once", "per-record")),
        System("streamscore-risk-eos-per-record", "risk", "streamscore run risk --bounded --delivery exactly-once "
               "--operator per-record", (5_000, 25_000), (1_000, 4_000),
               _streamscore("risk", "exactly-once", "per-record"), exactly_once=True),
        System("streamscore-reco-per-record", "reco", "streamscore run reco --bounded --delivery at-least-once "
               "--operator per-record (clicks)", (3_000, 15_000), (1_000, 4_000),
               _streamscore("reco", "at-least-once", "per-record")),
        System("faust-risk-alo", "risk", "streamscore run risk --runtime faust --delivery at-least-once "
               "(micro-batches of <= 500)", (30_000, 150_000), (1_000, 4_000), _faust("risk", "at-least-once", 500),
               low_load=True),
        System("faust-risk-eos", "risk", "streamscore run risk --runtime faust --delivery exactly-once "
               "(micro-batches of <= 500, one transaction per batch)", (30_000, 150_000), (1_000, 4_000),
               _faust("risk", "exactly-once", 500), exactly_once=True, low_load=True),
        System("faust-risk-alo-unbatched", "risk", "faust runtime, at-least-once, --batch-size 1 (a flush per event)",
               (500, 2_500), (200, 1_000), _faust("risk", "at-least-once", 1)),
        System("faust-risk-eos-unbatched", "risk", "faust runtime, exactly-once, --batch-size 1 (a transaction per "
               "event)", (500, 2_500), (200, 1_000), _faust("risk", "exactly-once", 1), exactly_once=True),
        System("faust-reco", "reco", "streamscore run reco --runtime faust --delivery at-least-once (clicks)",
               (20_000, 100_000), (1_000, 4_000), _faust("reco", "at-least-once", 500), low_load=True),
    )
}

#: The system throughput ratios are given against.
REFERENCE = "quix"
