"""The reco turn of the closed loop (`streamscore loop reco`; the decision and report: `pipelines.loop`).

1. `pipelines.reco_dataset.build_reco_dataset`: the production job's clicks and results up to `until`, with
   the purchases known by then.
2. `pipelines.reco_retraining.train_reco_on_dataset`: production fine-tuned (or a new model, `from_scratch`) on
   the clicks before the time-ordered cutoff, registered unpromoted.
3. Offline, on the sessions after the cutoff: the candidate replayed, production replayed, and what production
   served (the last two agree: the replay is the operator's step).
4. The backtest (`pipelines.backtest.runner`): a shadow Flink job recommends with the candidate over the whole
   input (from its start: every session's hidden state is the candidate's own); the holdout's metrics are then
   taken from the shadow topic and from the production topic, so the decision rests on what the streaming path
   recommends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from models.registry import ModelRegistry
from pipelines.exceptions import ConfigError
from pipelines.loop_request import LoopRequest
from pipelines.reco_dataset import build_reco_dataset
from pipelines.reco_retraining import (
    RecoSplits,
    evaluate_reco_on_dataset,
    load_reco_splits,
    metrics_at_k,
    production_reco_metrics,
    train_reco_on_dataset,
)


def _streamed_metrics(bootstrap: str, topic: str, splits: RecoSplits) -> dict[str, Any]:
    """The holdout metrics of the recommendations on a results topic."""
    from pipelines.kafka.topic_reader import read_values

    items = {r["event_id"]: r["items"] for r in (msgspec.json.decode(v) for v in read_values(bootstrap, topic))}
    sessions = splits.holdout()
    missing = [e for s in sessions for e in s.event_ids if e not in items]
    if missing:
        raise ConfigError(f"{len(missing)} holdout clicks have no result on {topic!r} (e.g. {missing[0]!r})")
    return metrics_at_k(sessions, {(i, t): items[e] for i, s in enumerate(sessions) for t, e in enumerate(s.event_ids)})


def _backtest(request: LoopRequest, version: int, splits: RecoSplits, echo: Callable[[str], None]) -> dict[str, Any]:
    from pipelines.backtest.runner import BacktestRequest, run_backtest

    outcome = run_backtest(BacktestRequest(production=request.production, model_ref=f"reco@{version}",
                                           from_timestamp_ms=0, report_dir=request.report_dir / "backtest"),
                           echo=echo)
    shadow_topic = outcome.summary["backtest"]["shadow_topic"]
    bootstrap = request.production.bootstrap
    return {"report_json": str(outcome.json_path), "report_png": str(outcome.png_path), "shadow_topic": shadow_topic,
            "diff": outcome.summary.get("diff"), "candidate": _streamed_metrics(bootstrap, shadow_topic, splits),
            "production": _streamed_metrics(bootstrap, request.production.output_topic, splits)}


def reco_turn(request: LoopRequest, registry: ModelRegistry, echo: Callable[[str], None]) -> dict[str, Any]:
    """Dataset, candidate, offline and backtest metrics of the reco turn (the report before the decision)."""
    production_version = registry.current("reco")
    dataset = request.report_dir / "dataset.parquet"
    built = build_reco_dataset(
        request.production.bootstrap, events_topic=request.production.input_topic,
        results_topic=request.production.output_topic, feedback_topic=request.feedback_topic,
        until_ms=request.until_ms, out=dataset, dlq_topic=f"{request.feedback_topic}.dlq",
    )
    echo(f"dataset: {built.rows:,} scored clicks of {built.sessions:,} sessions ({built.positives:,} bought) -> "
         f"{dataset}")
    version, manifest = train_reco_on_dataset(dataset, registry, seed=request.seed,
                                              holdout_share=request.holdout_share, from_scratch=request.from_scratch)
    echo(f"candidate: reco@{version} ({'new' if request.from_scratch else 'fine-tuned'}; production: "
         f"reco@{production_version})")
    splits = load_reco_splits(dataset, request.holdout_share)
    holdout = manifest["metrics_holdout"]
    report: dict[str, Any] = {
        "dataset": {"path": str(dataset), **{k: v for k, v in vars(built).items() if k != "path"}},
        "candidate": f"reco@{version}", "production": f"reco@{production_version}",
        "holdout": {"sessions": holdout["sessions"], "positions": manifest["metrics"]["positions"],
                    "purchase_positions": manifest["metrics"]["purchase_positions"], "from_ts": holdout["from_ts"],
                    "to_ts": holdout["to_ts"], "trained_to_ts": manifest["dataset"]["trained_to_ts"]},
        "offline": {"candidate": manifest["metrics"],
                    "production": evaluate_reco_on_dataset(registry.load("reco", production_version), splits),
                    "served": production_reco_metrics(splits)},
        "holdout_text": f"{holdout['sessions']:,} sessions",
    }
    if request.backtest:
        report["backtest"] = _backtest(request, version, splits, echo)
    return report
