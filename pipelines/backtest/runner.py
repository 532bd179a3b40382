"""Backtests: re-score history with another model into a shadow topic, then diff it against production.

`streamscore backtest PIPELINE --model NAME@V --from-timestamp ISO` runs a bounded shadow job with its own
everything — state (fresh, or copied from a restored production checkpoint, which stays read-only), checkpoint
folder, consumer group, transactional id prefix, output and dead-letter topics — so the production job's
checkpoints and topics are never written. Then it reads the production output topic and the shadow topic
(read_committed), joins them on event_id and writes a JSON summary and a PNG histogram (the pipeline's
`backtest_diff`, see `pipelines.backtest.report`).

A start from a timestamp has empty state: per-key features warm up from that point, so results of keys with
history before it differ from production for reasons other than the model; compare after the warm-up, or
start from a production checkpoint (`--from-checkpoint`).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pipelines.backtest import report
from pipelines.backtest.topics import window_event_ids
from pipelines.exceptions import ConfigError, SetupError, UsageError
from pipelines.kafka.topic_reader import offsets_for_time, partitions, read_values
from pipelines.registry import get
from pipelines.runtimes.flink.options import JobOptions

WARM_UP_NOTE = (
    "a backtest from a timestamp starts with empty state: per-key features warm up from that time, so events of "
    "keys with earlier history compare like with like only after the warm-up"
)


@dataclass(frozen=True)
class BacktestRequest:
    """What to backtest: the production job's options (topics, config, checkpoint folder), the model to try,
    where to start (a timestamp or a production checkpoint), where to stop, and where to write."""

    production: JobOptions
    model_ref: str
    from_timestamp_ms: int | None = None
    from_checkpoint: Path | None = None
    to_timestamp_ms: int | None = None
    shadow_topic: str | None = None
    report_dir: Path | None = None
    reco_k: int = 10


@dataclass(frozen=True)
class BacktestPlan:
    """The shadow job (its own options and what it restores) and where the report goes."""

    run_id: str
    shadow: JobOptions
    restore: Path | None
    report_dir: Path
    production_topic: str


@dataclass(frozen=True)
class BacktestOutcome:
    """Where the report went and its summary."""

    json_path: Path
    png_path: Path
    summary: dict[str, Any]
    text: str


def topic_safe(text: str) -> str:
    """`text` with characters Kafka topic names do not allow replaced (`risk@2` -> `risk-2`)."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


def default_shadow_topic(output_topic: str, model_ref: str, short_id: str) -> str:
    """`<output>.backtest.<model>.<short-id>`, e.g. `risk.scores.backtest.risk-2.1a2b3c4d`."""
    return f"{output_topic}.backtest.{topic_safe(model_ref)}.{short_id}"


def check_model(model_ref: str) -> None:
    """Refuse a model reference that is not NAME@VERSION of a registered model, saying what exists."""
    from models.exceptions import ModelError
    from models.registry import ModelRegistry, parse_ref

    try:
        name, version = parse_ref(model_ref)
    except ValueError as exc:
        raise UsageError(f"--model: {exc}") from None
    if version is None:
        raise UsageError(f"--model needs an explicit version, NAME@V (e.g. {name}@2), got {model_ref!r}")
    registry = ModelRegistry()
    try:
        registry.manifest(name, version)
    except (ModelError, FileNotFoundError, OSError) as exc:
        raise ConfigError(f"--model {model_ref}: not in the registry {registry.root} ({exc}); "
                          "see `streamscore models list`") from None


def plan(request: BacktestRequest, *, home: Callable[..., Path] | None = None) -> BacktestPlan:
    """The shadow job's options: fresh ids, folder and topics derived from the request; refuses unsafe ones."""
    if (request.from_timestamp_ms is None) == (request.from_checkpoint is None):
        raise UsageError("a backtest starts from exactly one of --from-timestamp or --from-checkpoint")
    if (request.to_timestamp_ms is not None and request.from_timestamp_ms is not None
            and request.to_timestamp_ms <= request.from_timestamp_ms):
        raise UsageError("--to-timestamp must be later than --from-timestamp")
    production = request.production
    short_id = uuid.uuid4().hex[:8]
    run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{short_id}"
    if request.report_dir is not None:
        report_dir = request.report_dir
    else:
        from pipelines.infra.home import subdir

        report_dir = (home or subdir)("backtests", production.pipeline) / run_id
    report_dir = report_dir.resolve()
    checkpoint_dir = report_dir / "checkpoints"
    production_checkpoints = production.checkpoint_dir.resolve()
    if checkpoint_dir == production_checkpoints or production_checkpoints in checkpoint_dir.parents:
        raise UsageError(f"--report-dir {report_dir} is inside the production checkpoint folder "
                          f"{production_checkpoints}; pick a folder outside it")
    shadow_topic = request.shadow_topic or default_shadow_topic(production.output_topic, request.model_ref, short_id)
    if shadow_topic in (production.output_topic, production.input_topic, production.dlq_topic):
        raise UsageError(f"--shadow-topic {shadow_topic!r} is a production topic; pick a new name")
    changes: dict[str, Any] = {
        "output_topic": shadow_topic,
        "dlq_topic": f"{shadow_topic}.dlq",
        "checkpoint_dir": checkpoint_dir,
        "bounded": True,
        "model_ref": request.model_ref,
        "delivery": "exactly-once",
        "transactional_id_prefix": f"streamscore-backtest-{production.pipeline}-{short_id}",
        "state_changelog": None,
        "start_from": "group-offsets",
        "start_timestamp_ms": None,
        "start_offsets": None,
        "stop_timestamp_ms": request.to_timestamp_ms,
    }
    if request.from_timestamp_ms is not None:
        changes |= {"start_from": "timestamp", "start_timestamp_ms": request.from_timestamp_ms}
    shadow = dataclasses.replace(production, **changes)
    return BacktestPlan(run_id, shadow, request.from_checkpoint, report_dir, production.output_topic)


def _refuse_used_topic(bootstrap: str, topic: str) -> None:
    from pipelines.kafka.clients import end_offsets

    try:
        used = sum(end_offsets(bootstrap, topic).values())
    except KeyError:  # the topic does not exist yet
        return
    if used:
        raise ConfigError(f"shadow topic {topic!r} is not empty (end offset {used}); a backtest needs a new or "
                          "empty topic (omit --shadow-topic for a fresh name)")


def run_shadow_job(
    shadow_plan: BacktestPlan, stop_offsets: dict[int, int] | None, echo: Callable[[str], None]
) -> float:
    """Run the shadow job in a child process (log in the report folder); returns its wall-clock seconds."""
    from pipelines.backtest.job import options_to_json

    shadow_plan.report_dir.mkdir(parents=True, exist_ok=True)
    job_file = shadow_plan.report_dir / "shadow-job.json"
    log = shadow_plan.report_dir / "shadow-job.log"
    job_file.write_text(options_to_json(shadow_plan.shadow, shadow_plan.restore, stop_offsets))
    echo(f"shadow job: {shadow_plan.shadow.input_topic} -> {shadow_plan.shadow.output_topic} with "
         f"{shadow_plan.shadow.model_ref} (log: {log})")
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run([sys.executable, "-m", "pipelines.backtest.job", str(job_file)],
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SetupError(f"the shadow job failed (exit {proc.returncode}); its log is {log}; last lines:\n{tail}")
    return time.monotonic() - started


def _decoded(values: Any) -> list[dict[str, Any]]:
    return [msgspec.json.decode(value) for value in values]


def run_backtest(request: BacktestRequest, *, echo: Callable[[str], None] = print) -> BacktestOutcome:
    """Plan, run the shadow job, then diff it against production and write the report."""
    from pipelines.kafka.clients import end_offsets, ensure_topics

    check_model(request.model_ref)
    the_plan = plan(request)
    shadow = the_plan.shadow
    bootstrap = shadow.bootstrap
    partitions(bootstrap, shadow.input_topic)  # the input must exist
    _refuse_used_topic(bootstrap, shadow.output_topic)
    ensure_topics(bootstrap, [shadow.output_topic, shadow.dlq_topic, the_plan.production_topic])
    starts = offsets_for_time(bootstrap, shadow.input_topic, request.from_timestamp_ms) \
        if request.from_timestamp_ms is not None else None
    stops = offsets_for_time(bootstrap, shadow.input_topic, request.to_timestamp_ms) \
        if request.to_timestamp_ms is not None else None
    if the_plan.restore is not None and stops is None:
        stops = end_offsets(bootstrap, shadow.input_topic)
    # A fresh bounded job stops at the input's end when it starts, i.e. at these offsets (input produced
    # while it starts up is the only difference, and it falls outside the compared window).
    input_end = stops if stops is not None else end_offsets(bootstrap, shadow.input_topic)
    seconds = run_shadow_job(the_plan, stops, echo)

    window: set[str] | None = None
    invalid = None
    if starts is not None:
        window, invalid = window_event_ids(shadow.pipeline, bootstrap, shadow.input_topic, starts, input_end)
    production = report.index_results(_decoded(read_values(bootstrap, the_plan.production_topic)))
    shadowed = report.index_results(_decoded(read_values(bootstrap, shadow.output_topic)))

    summary: dict[str, Any] = {"backtest": _describe(the_plan, request, starts, stops, seconds)}
    summary["window"] = {"valid_events": len(window) if window is not None else None, "invalid_records": invalid}
    diff = get(shadow.pipeline).backtest_diff or report.diff_results
    outcome = diff(production, shadowed, window, k=request.reco_k, title=f"{shadow.model_ref} vs production",
                   report_dir=the_plan.report_dir)
    summary["diff"] = outcome.summary
    json_path = report.write_json(the_plan.report_dir / "report.json", summary)
    return BacktestOutcome(json_path, outcome.png, summary, outcome.text)


def _describe(the_plan: BacktestPlan, request: BacktestRequest, starts: dict[int, int] | None,
              stops: dict[int, int] | None, seconds: float) -> dict[str, Any]:
    shadow = the_plan.shadow
    return {
        "run_id": the_plan.run_id,
        "pipeline": shadow.pipeline,
        "model": shadow.model_ref,
        "input_topic": shadow.input_topic,
        "production_topic": the_plan.production_topic,
        "shadow_topic": shadow.output_topic,
        "shadow_dlq_topic": shadow.dlq_topic,
        "from_timestamp_ms": request.from_timestamp_ms,
        "from_checkpoint": str(the_plan.restore) if the_plan.restore else None,
        "to_timestamp_ms": request.to_timestamp_ms,
        "start_offsets": {str(p): o for p, o in starts.items()} if starts is not None else None,
        "stop_offsets": {str(p): o for p, o in stops.items()} if stops is not None else None,
        "checkpoint_dir": str(shadow.checkpoint_dir),
        "transactional_id_prefix": shadow.id_prefix,
        "shadow_job_seconds": round(seconds, 2),
        "note": WARM_UP_NOTE if the_plan.restore is None else
        "state restored from a production checkpoint (read-only); the input continues from its offsets",
    }
