"""What one turn of the closed loop is asked to do (`pipelines.loop`, `pipelines.reco_loop`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.runtimes.flink.options import JobOptions

#: The metrics the loop can decide on, per pipeline (the first is the default).
METRICS = {"risk": ("roc_auc", "pr_auc"), "reco": ("hr_at_10", "mrr_at_10", "purchase_hr_at_10")}


@dataclass(frozen=True)
class LoopRequest:
    """One turn of the loop: the production job's topics/config, the feedback and (risk) changelog topics, the
    time the dataset is built as of, and the promotion rule (`metric` None: the pipeline's first)."""

    production: JobOptions
    feedback_topic: str
    changelog_topic: str
    until_ms: int
    report_dir: Path
    metric: str | None = None
    margin: float = 0.02
    holdout_share: float = 0.2
    seed: int = 1
    backtest: bool = True
    from_scratch: bool = False

    @property
    def pipeline(self) -> str:
        """The production job's pipeline."""
        return self.production.pipeline

    @property
    def chosen_metric(self) -> str:
        """The metric the candidate must improve."""
        return self.metric or METRICS[self.pipeline][0]


