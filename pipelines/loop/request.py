"""What one turn of the closed loop is asked to do (`pipelines.loop.turn`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.loop.spec import DEFAULT_HOLDOUT_SHARE
from pipelines.runtimes.flink.options import JobOptions


@dataclass(frozen=True)
class LoopRequest:
    """One turn of the loop: the production job's topics/config, the feedback and changelog topics, the time the
    dataset is built as of, and the promotion rule (`metric` None: the pipeline's first)."""

    production: JobOptions
    feedback_topic: str
    changelog_topic: str
    until_ms: int
    report_dir: Path
    metric: str | None = None
    margin: float = 0.02
    holdout_share: float = DEFAULT_HOLDOUT_SHARE
    seed: int = 1
    backtest: bool = True
    from_scratch: bool = False

    @property
    def pipeline(self) -> str:
        """The production job's pipeline."""
        return self.production.pipeline
