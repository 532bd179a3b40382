"""The closed loop in one step: point-in-time dataset -> candidate model -> backtest against production ->
report -> promote only if the candidate beats production by a margin. This module runs the risk turn and holds
what both pipelines share (the request, the decision, the report); `pipelines.reco_loop` runs the reco turn.

The risk turn:

1. `pipelines.datasets.build_risk_dataset`: labels known by `until` joined to the results, features from the
   state changelog.
2. `pipelines.retraining.train_risk_on_dataset`: trained on the dataset's older rows, registered unpromoted.
3. Evaluation on the dataset's newest rows (the time-ordered holdout, after every training row): the
   candidate, the current production model on the same feature vectors, and what production actually served.
4. The backtest (`pipelines.backtest.runner`): a shadow Flink job re-scores the whole input with the candidate
   (from the input's start, so no per-key warm-up differs), diffed against the production topic; the holdout's
   labels are then scored on both topics, so the report shows the candidate's and production's metric as the
   streaming path computes them.
5. Promotion (`decide`): when the candidate's `metric` (risk: roc_auc or pr_auc; reco: hr_at_10, mrr_at_10 or
   purchase_hr_at_10; from the backtest when it ran) is at least `margin` above production's, `models
   promote`; a job that follows promotions (`model_refresh_seconds`) hot-swaps to it. Otherwise the candidate
   stays registered and unpromoted, and the report says why.
The report: `loop.json` and `loop.png` in the report folder (with the dataset and the backtest's report).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from models.registry import ModelRegistry
from pipelines.datasets import build_risk_dataset
from pipelines.exceptions import ConfigError
from pipelines.loop_request import METRICS, LoopRequest
from pipelines.retraining import evaluate_on_dataset, load_splits, metrics_of, production_metrics


def _backtest(request: LoopRequest, version: int, holdout_ids: list[str], labels: np.ndarray,
              echo: Callable[[str], None]) -> dict[str, Any]:
    """Run the candidate's shadow job over the whole input; the holdout metrics on both topics."""
    from pipelines.backtest.runner import BacktestRequest, run_backtest
    from pipelines.kafka.topic_reader import read_values

    outcome = run_backtest(BacktestRequest(production=request.production, model_ref=f"risk@{version}",
                                           from_timestamp_ms=0, report_dir=request.report_dir / "backtest"),
                           echo=echo)
    shadow_topic = outcome.summary["backtest"]["shadow_topic"]

    def scores(topic: str) -> np.ndarray:
        by_id = {r["event_id"]: r["score"] for r in (msgspec.json.decode(v) for v in
                                                    read_values(request.production.bootstrap, topic))}
        missing = [e for e in holdout_ids if e not in by_id]
        if missing:
            raise ConfigError(f"{len(missing)} holdout events have no result on {topic!r} (e.g. {missing[0]!r})")
        return np.array([by_id[e] for e in holdout_ids], dtype=np.float64)

    return {
        "report_json": str(outcome.json_path), "report_png": str(outcome.png_path), "shadow_topic": shadow_topic,
        "diff": outcome.summary.get("diff"),
        "candidate": metrics_of(labels, scores(shadow_topic)),
        "production": metrics_of(labels, scores(request.production.output_topic)),
    }


def run_loop(request: LoopRequest, registry: ModelRegistry, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """One turn of the loop of the request's pipeline (module doc); returns the report (also in `loop.json`)."""
    if request.pipeline not in METRICS:
        raise ConfigError(f"the loop runs for {', '.join(METRICS)}, not {request.pipeline!r}")
    if request.chosen_metric not in METRICS[request.pipeline]:
        raise ConfigError(f"--metric for {request.pipeline} must be one of {', '.join(METRICS[request.pipeline])}, "
                          f"got {request.metric!r}")
    if registry.current(request.pipeline) is None:
        raise ConfigError(f"no current {request.pipeline} model in {registry.root}: promote one first")
    request.report_dir.mkdir(parents=True, exist_ok=True)
    if request.pipeline == "reco":
        from pipelines.reco_loop import reco_turn

        report = reco_turn(request, registry, echo)
    else:
        report = _risk_turn(request, registry, echo)
    return decide(report, request, registry, echo)


def _risk_turn(request: LoopRequest, registry: ModelRegistry, echo: Callable[[str], None]) -> dict[str, Any]:
    """Dataset, candidate, offline and backtest metrics of the risk turn (the report before the decision)."""
    from pipelines.retraining import train_risk_on_dataset

    production_version = registry.current("risk")
    dataset = request.report_dir / "dataset.parquet"
    built = build_risk_dataset(
        request.production.bootstrap, results_topic=request.production.output_topic,
        feedback_topic=request.feedback_topic, changelog_topic=request.changelog_topic, until_ms=request.until_ms,
        out=dataset, dlq_topic=f"{request.feedback_topic}.dlq",
    )
    echo(f"dataset: {built.rows:,} labelled results ({built.positives:,} positive) -> {dataset}")
    version, manifest = train_risk_on_dataset(dataset, registry, seed=request.seed,
                                              holdout_share=request.holdout_share, from_scratch=request.from_scratch)
    echo(f"candidate: risk@{version} (production: risk@{production_version})")
    splits = load_splits(dataset, request.holdout_share)
    holdout_ids = splits.event_ids[splits.holdout]
    labels = splits.labels[splits.holdout]
    report: dict[str, Any] = {
        "dataset": {"path": str(dataset), **{k: v for k, v in vars(built).items() if k != "path"}},
        "candidate": f"risk@{version}", "production": f"risk@{production_version}",
        "holdout": {"rows": len(holdout_ids), "positives": int(labels.sum()),
                    "from_ts": int(splits.ts[splits.holdout.start]), "to_ts": int(splits.ts[-1]),
                    "trained_to_ts": manifest["dataset"]["trained_to_ts"]},
        "offline": {"candidate": manifest["metrics"],
                    "production": evaluate_on_dataset(registry.load("risk", production_version), splits),
                    "served": production_metrics(splits)},
        "holdout_text": f"{len(holdout_ids):,} rows",
    }
    if request.backtest:
        report["backtest"] = _backtest(request, version, holdout_ids, labels, echo)
    return report


def decide(report: dict[str, Any], request: LoopRequest, registry: ModelRegistry,
           echo: Callable[[str], None]) -> dict[str, Any]:
    """Promote the report's candidate when it beats production by the margin on the metric (from the backtest
    when it ran, else offline); write `loop.json` and `loop.png`; the completed report."""
    metric, candidate, production = request.chosen_metric, report["candidate"], report["production"]
    compared = report.get("backtest") or report["offline"]
    report |= {"metric": metric, "margin": request.margin}
    mine, theirs = compared["candidate"][metric], compared["production"][metric]
    if mine is None or theirs is None:
        raise ConfigError(f"the holdout has no {metric} (no position it counts): choose another --metric or "
                          "build over a longer time")
    gain = round(mine - theirs, 5)
    report["gain"] = gain
    if gain >= request.margin:
        registry.promote(request.pipeline, int(candidate.split("@")[1]))
        report["promoted"] = True
        report["why"] = (f"{candidate}'s {metric} on the holdout is {gain:+.4f} against production's "
                         f"(margin {request.margin}): promoted")
    else:
        report["promoted"] = False
        report["why"] = (f"{candidate}'s {metric} on the holdout is {gain:+.4f} against production's, "
                         f"below the margin {request.margin}: {production} stays current")
    echo(report["why"])
    (request.report_dir / "loop.json").write_text(json.dumps(report, indent=2) + "\n")
    _chart(report, METRICS[request.pipeline], request.report_dir / "loop.png")
    return report


def _chart(report: dict[str, Any], metrics: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = report.get("backtest") or report["offline"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, (who, label) in enumerate((("production", report["production"]), ("candidate", report["candidate"]))):
        values = [source[who][m] or 0.0 for m in metrics]
        ax.bar(np.arange(len(metrics)) + (i - 0.5) * width, values, width, label=label)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylim=(0, 1), title=f"time-ordered holdout ({report['holdout_text']}): "
           f"{'promoted' if report['promoted'] else 'kept production'}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
