"""The closed loop in one step, for any pipeline that declares a `LoopSpec`: point-in-time dataset -> candidate
model -> offline metrics -> backtest against production -> decision -> report.

1. `LoopSpec.build_dataset`: labels known by `until` joined to the results up to it (and what else the
   pipeline's rows need: risk's scored features from the state changelog, reco's clicks from the input topic).
2. `LoopSpec.train`: production fine-tuned (or a new model, `from_scratch`) on the rows before the dataset's
   time-ordered holdout, registered unpromoted.
3. Offline, on the holdout: the candidate, the current production model on the same rows, and what production
   actually served.
4. The backtest (`pipelines.backtest.runner`): a shadow Flink job re-scores the whole input with the candidate
   (from the input's start, so no per-key warm-up differs), diffed against the production topic; the holdout is
   then measured on both topics (`Holdout.streamed`), so the decision rests on what the streaming path computes.
5. The decision (`pipelines.loop.report.decide`): when the candidate's metric (the pipeline's first by default;
   from the backtest when it ran) is at least `margin` above production's, `models promote`; a job that follows
   promotions (`model_refresh_seconds`) hot-swaps to it. Otherwise the candidate stays registered and
   unpromoted, and the report says why.
The report: `loop.json` and `loop.png` in the report folder (with the dataset and the backtest's report).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from models.registry import ModelRegistry
from pipelines.exceptions import ConfigError
from pipelines.loop.report import LoopReport, decide
from pipelines.loop.request import LoopRequest
from pipelines.loop.spec import CHANGELOG, EVENTS, DatasetSources, Holdout, LoopSpec
from pipelines.registry import get, loop_pipelines


def loop_spec(pipeline: str) -> LoopSpec:
    """The `LoopSpec` pipeline `pipeline` declares; `ConfigError` naming the pipelines that have one."""
    spec = get(pipeline).loop
    if spec is None:
        raise ConfigError(f"the closed loop runs for {', '.join(loop_pipelines())}, not {pipeline!r}")
    return spec


def run_loop(request: LoopRequest, registry: ModelRegistry, *, echo: Callable[[str], None] = print) -> LoopReport:
    """One turn of the loop of the request's pipeline (module doc); returns the report (also in `loop.json`)."""
    spec = loop_spec(request.pipeline)
    metric = request.metric or spec.metrics[0]
    if metric not in spec.metrics:
        raise ConfigError(f"--metric for {request.pipeline} must be one of {', '.join(spec.metrics)}, "
                          f"got {request.metric!r}")
    production_version = registry.current(request.pipeline)
    if production_version is None:
        raise ConfigError(f"no current {request.pipeline} model in {registry.root}: promote one first")
    request.report_dir.mkdir(parents=True, exist_ok=True)
    dataset = request.report_dir / "dataset.parquet"
    production = request.production
    built = spec.build_dataset(DatasetSources(
        production.bootstrap, results_topic=production.output_topic, feedback_topic=request.feedback_topic,
        until_ms=request.until_ms, dlq_topic=f"{request.feedback_topic}.dlq",
        events_topic=production.input_topic if EVENTS in spec.sources else None,
        changelog_topic=request.changelog_topic if CHANGELOG in spec.sources else None), dataset)
    echo(f"dataset: {spec.describe_dataset(built)} -> {dataset}")
    candidate = spec.train(dataset, registry, seed=request.seed, holdout_share=request.holdout_share,
                           from_scratch=request.from_scratch)
    name = request.pipeline
    echo(f"candidate: {name}@{candidate.version} ({'new' if request.from_scratch else 'fine-tuned'}; production: "
         f"{name}@{production_version})")
    holdout = spec.holdout(dataset, request.holdout_share)
    report = LoopReport(
        pipeline=name, dataset={"path": str(dataset), **{k: v for k, v in vars(built).items() if k != "path"}},
        candidate_version=candidate.version, production_version=production_version,
        holdout=holdout.describe(candidate), holdout_text=holdout.size_text,
        offline={"candidate": candidate.manifest["metrics"],
                 "production": holdout.evaluate(registry.load(name, production_version)),
                 "served": holdout.served()},
    )
    if request.backtest:
        report.backtest = _backtest(request, candidate.version, holdout, echo)
    return decide(report, metric, request.margin, spec.metrics, registry, request.report_dir, echo)


def _backtest(request: LoopRequest, version: int, holdout: Holdout, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run the candidate's shadow job over the whole input; the holdout's metrics on both topics."""
    from pipelines.backtest.runner import BacktestRequest, run_backtest
    from pipelines.kafka.topic_reader import read_values

    outcome = run_backtest(BacktestRequest(production=request.production, model_ref=f"{request.pipeline}@{version}",
                                           from_timestamp_ms=0, report_dir=request.report_dir / "backtest"),
                           echo=echo)
    shadow_topic = outcome.summary["backtest"]["shadow_topic"]

    def measured(topic: str) -> dict[str, Any]:
        results = {r["event_id"]: r for r in (msgspec.json.decode(v) for v in
                                              read_values(request.production.bootstrap, topic))}
        return holdout.streamed(results, topic)

    return {"report_json": str(outcome.json_path), "report_png": str(outcome.png_path), "shadow_topic": shadow_topic,
            "diff": outcome.summary.get("diff"), "candidate": measured(shadow_topic),
            "production": measured(request.production.output_topic)}
