"""The risk pipeline's part of the closed loop (`pipelines.loop`): datasets of labelled results with the
features each was scored on (`pipelines.risk.dataset`), candidates fine-tuned on them
(`pipelines.risk.retraining`), measured by ROC-AUC and PR-AUC on the time-ordered holdout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.exceptions import ConfigError
from pipelines.loop.spec import (
    CHANGELOG,
    Candidate,
    DatasetSources,
    DriftOutcome,
    DriftRequest,
    Holdout,
    LoopSpec,
)

if TYPE_CHECKING:
    from models.handle import ModelHandle
    from models.registry import ModelRegistry
    from pipelines.loop.labels import DatasetReport
    from pipelines.risk.retraining import DatasetSplits


class RiskHoldout(Holdout):
    """The newest rows of a risk dataset."""

    def __init__(self, splits: DatasetSplits) -> None:
        self.splits = splits
        self.event_ids = splits.event_ids[splits.holdout]
        self.labels = splits.labels[splits.holdout]

    def evaluate(self, handle: ModelHandle) -> dict[str, Any]:
        from pipelines.risk.retraining import evaluate_on_dataset

        return evaluate_on_dataset(handle, self.splits)

    def served(self) -> dict[str, Any]:
        from pipelines.risk.retraining import production_metrics

        return production_metrics(self.splits)

    def streamed(self, results: dict[str, dict[str, Any]], topic: str) -> dict[str, Any]:
        import numpy as np

        from pipelines.risk.retraining import metrics_of

        missing = [e for e in self.event_ids if e not in results]
        if missing:
            raise ConfigError(f"{len(missing)} holdout events have no result on {topic!r} (e.g. {missing[0]!r})")
        return metrics_of(self.labels, np.array([results[e]["score"] for e in self.event_ids], dtype=np.float64))

    def describe(self, candidate: Candidate) -> dict[str, Any]:
        splits = self.splits
        return {"rows": len(self.event_ids), "positives": int(self.labels.sum()),
                "from_ts": int(splits.ts[splits.holdout.start]), "to_ts": int(splits.ts[-1]),
                "trained_to_ts": candidate.manifest["dataset"]["trained_to_ts"]}

    @property
    def size_text(self) -> str:
        return f"{len(self.event_ids):,} rows"


class RiskLoop(LoopSpec):
    """Chargebacks as labels, the changelog's scored features as rows, ROC-AUC (default) or PR-AUC to promote."""

    metrics = ("roc_auc", "pr_auc")
    sources = frozenset({CHANGELOG})
    has_drift = True

    def synthetic_labels(self, events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
        from pipelines.risk.feedback import chargeback_labels

        return chargeback_labels(events, seed)

    def build_dataset(self, sources: DatasetSources, out: Path) -> DatasetReport:
        from pipelines.risk.dataset import build_risk_dataset

        assert sources.changelog_topic is not None  # `sources` asks for it
        return build_risk_dataset(sources.bootstrap, results_topic=sources.results_topic,
                                  feedback_topic=sources.feedback_topic, changelog_topic=sources.changelog_topic,
                                  until_ms=sources.until_ms, out=out, dlq_topic=sources.dlq_topic)

    def train(self, dataset: Path, registry: ModelRegistry, *, seed: int, holdout_share: float,
              from_scratch: bool) -> Candidate:
        from pipelines.risk.retraining import train_risk_on_dataset

        return Candidate(*train_risk_on_dataset(dataset, registry, seed=seed, holdout_share=holdout_share,
                                                from_scratch=from_scratch))

    def holdout(self, dataset: Path, holdout_share: float) -> Holdout:
        from pipelines.risk.retraining import load_splits

        return RiskHoldout(load_splits(dataset, holdout_share))

    def measure_drift(self, request: DriftRequest) -> DriftOutcome:
        """PSI of the scored features and the score (and with labels, KS of the frauds' features):
        `pipelines.risk.drift`."""
        from pipelines.risk.drift import measure_drift, write_drift_report

        report, scores = measure_drift(
            request.bootstrap, results_topic=request.results_topic, changelog_topic=request.changelog_topic,
            window_ms=request.window_ms, reference=request.reference, threshold=request.threshold,
            feedback_topic=request.feedback_topic)
        json_path, png_path = write_drift_report(report, scores, request.report_dir)
        flagged = ", ".join(report.flagged) or "none"
        summary = [f"{report.reference_rows:,} reference vs {report.current_rows:,} current results; score PSI "
                   f"{report.score_psi}; features at or above {report.threshold}: {flagged}"]
        if report.positives is not None:
            summary.append(f"label-1 results: {report.positives.reference_rows:,} reference vs "
                           f"{report.positives.current_rows:,} current; features that changed (KS): "
                           f"{', '.join(report.positives.flagged) or 'none'}")
        return DriftOutcome(summary, json_path, png_path)
