"""The closed loop of the risk pipeline in one step: point-in-time dataset -> candidate model -> backtest
against production -> report -> promote only if the candidate beats production by a margin.

1. `pipelines.datasets.build_risk_dataset`: labels known by `until` joined to the results, features from the
   state changelog.
2. `pipelines.retraining.train_risk_on_dataset`: trained on the dataset's older rows, registered unpromoted.
3. Evaluation on the dataset's newest rows (the time-ordered holdout, after every training row): the
   candidate, the current production model on the same feature vectors, and what production actually served.
4. The backtest (`pipelines.backtest.runner`): a shadow Flink job re-scores the whole input with the candidate
   (from the input's start, so no per-key warm-up differs), diffed against the production topic; the holdout's
   labels are then scored on both topics, so the report shows the candidate's and production's metric as the
   streaming path computes them.
5. Promotion: when the candidate's `metric` (roc_auc or pr_auc, from the backtest when it ran) is at least
   `margin` above production's, `models promote`; a job that follows promotions (`model_refresh_seconds`)
   hot-swaps to it. Otherwise the candidate stays registered and unpromoted, and the report says why.
The report: `loop.json` and `loop.png` in the report folder (with the dataset and the backtest's report).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from models.registry import ModelRegistry
from pipelines.datasets import build_risk_dataset
from pipelines.exceptions import ConfigError
from pipelines.retraining import evaluate_on_dataset, load_splits, metrics_of, production_metrics
from pipelines.runtimes.flink.options import JobOptions

METRICS = ("roc_auc", "pr_auc")


@dataclass(frozen=True)
class LoopRequest:
    """One turn of the loop: the production job's topics/config, the feedback and changelog topics, the time
    the dataset is built as of, and the promotion rule."""

    production: JobOptions
    feedback_topic: str
    changelog_topic: str
    until_ms: int
    report_dir: Path
    metric: str = "roc_auc"
    margin: float = 0.02
    holdout_share: float = 0.2
    seed: int = 1
    backtest: bool = True


def _backtest(request: LoopRequest, version: int, holdout_ids: list[str], labels: np.ndarray,
              echo: Callable[[str], None]) -> dict[str, Any]:
    """Run the candidate's shadow job over the whole input; the holdout metrics on both topics."""
    from pipelines.backtest.runner import BacktestRequest, run_backtest
    from pipelines.backtest.topics import read_values

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
    """One turn of the loop (module doc); returns the report (also written to `loop.json`)."""
    from pipelines.retraining import train_risk_on_dataset

    if request.metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {request.metric!r}")
    production_version = registry.current("risk")
    if production_version is None:
        raise ConfigError(f"no current risk model in {registry.root}: promote one first")
    request.report_dir.mkdir(parents=True, exist_ok=True)
    dataset = request.report_dir / "dataset.parquet"
    built = build_risk_dataset(
        request.production.bootstrap, results_topic=request.production.output_topic,
        feedback_topic=request.feedback_topic, changelog_topic=request.changelog_topic, until_ms=request.until_ms,
        out=dataset, dlq_topic=f"{request.feedback_topic}.dlq",
    )
    echo(f"dataset: {built.rows:,} labelled results ({built.positives:,} positive) -> {dataset}")
    version, manifest = train_risk_on_dataset(dataset, registry, seed=request.seed,
                                              holdout_share=request.holdout_share)
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
        "metric": request.metric, "margin": request.margin,
    }
    compared = report["offline"]
    if request.backtest:
        report["backtest"] = _backtest(request, version, holdout_ids, labels, echo)
        compared = report["backtest"]
    gain = round(compared["candidate"][request.metric] - compared["production"][request.metric], 5)
    report["gain"] = gain
    if gain >= request.margin:
        registry.promote("risk", version)
        report["promoted"] = True
        report["why"] = (f"risk@{version}'s {request.metric} on the holdout is {gain:+.4f} against production's "
                         f"(margin {request.margin}): promoted")
    else:
        report["promoted"] = False
        report["why"] = (f"risk@{version}'s {request.metric} on the holdout is {gain:+.4f} against production's, "
                         f"below the margin {request.margin}: risk@{production_version} stays current")
    echo(report["why"])
    (request.report_dir / "loop.json").write_text(json.dumps(report, indent=2) + "\n")
    _chart(report, request.report_dir / "loop.png")
    return report


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = report.get("backtest") or report["offline"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, (who, label) in enumerate((("production", report["production"]), ("candidate", report["candidate"]))):
        values = [source[who][m] for m in METRICS]
        ax.bar(np.arange(len(METRICS)) + (i - 0.5) * width, values, width, label=label)
    ax.set_xticks(range(len(METRICS)), METRICS)
    ax.set(ylim=(0, 1), title=f"time-ordered holdout ({report['holdout']['rows']:,} rows): "
           f"{'promoted' if report['promoted'] else 'kept production'}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
