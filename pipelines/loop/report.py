"""A turn's report (`LoopReport`) and the decision that completes it: promote the candidate when it beats
production by the margin on the chosen metric (from the backtest when it ran, else offline)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.registry import ModelRegistry
from pipelines.exceptions import ConfigError


@dataclass
class LoopReport:
    """What a turn built, trained and measured, and what it decided (`loop.json` is `as_json()`).

    `offline` and `backtest` hold `candidate` and `production` metrics (offline also `served`: what production
    served on the holdout); `backtest` is None with `--no-backtest`."""

    pipeline: str
    dataset: dict[str, Any]
    candidate_version: int
    production_version: int
    holdout: dict[str, Any]
    holdout_text: str
    offline: dict[str, Any]
    backtest: dict[str, Any] | None = None
    metric: str = ""
    margin: float = 0.0
    gain: float | None = None
    promoted: bool = False
    why: str = ""

    @property
    def candidate(self) -> str:
        """The candidate's reference, `name@version`."""
        return f"{self.pipeline}@{self.candidate_version}"

    @property
    def production(self) -> str:
        """Production's reference when the turn started."""
        return f"{self.pipeline}@{self.production_version}"

    def as_json(self) -> dict[str, Any]:
        """The report as `loop.json` holds it."""
        out: dict[str, Any] = {"dataset": self.dataset, "candidate": self.candidate, "production": self.production,
                               "holdout": self.holdout, "offline": self.offline, "holdout_text": self.holdout_text}
        if self.backtest is not None:
            out["backtest"] = self.backtest
        return out | {"metric": self.metric, "margin": self.margin, "gain": self.gain, "promoted": self.promoted,
                      "why": self.why}


def decide(report: LoopReport, metric: str, margin: float, metrics: tuple[str, ...], registry: ModelRegistry,
           report_dir: Path, echo: Callable[[str], None]) -> LoopReport:
    """Promote the candidate when it beats production by `margin` on `metric` (from the backtest when it ran,
    else offline); write `loop.json` and `loop.png` (`metrics` charted) in `report_dir`; the completed report."""
    compared = report.backtest or report.offline
    report.metric, report.margin = metric, margin
    mine, theirs = compared["candidate"][metric], compared["production"][metric]
    if mine is None or theirs is None:
        raise ConfigError(f"the holdout has no {metric} (no position it counts): choose another --metric or "
                          "build over a longer time")
    report.gain = round(mine - theirs, 5)
    report.promoted = report.gain >= margin
    if report.promoted:
        registry.promote(report.pipeline, report.candidate_version)
        report.why = (f"{report.candidate}'s {metric} on the holdout is {report.gain:+.4f} against production's "
                      f"(margin {margin}): promoted")
    else:
        report.why = (f"{report.candidate}'s {metric} on the holdout is {report.gain:+.4f} against production's, "
                      f"below the margin {margin}: {report.production} stays current")
    echo(report.why)
    (report_dir / "loop.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    _chart(report, metrics, report_dir / "loop.png")
    return report


def _chart(report: LoopReport, metrics: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    source = report.backtest or report.offline
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.38
    for i, (who, label) in enumerate((("production", report.production), ("candidate", report.candidate))):
        values = [source[who][m] or 0.0 for m in metrics]
        ax.bar(np.arange(len(metrics)) + (i - 0.5) * width, values, width, label=label)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(ylim=(0, 1), title=f"time-ordered holdout ({report.holdout_text}): "
           f"{'promoted' if report.promoted else 'kept production'}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
