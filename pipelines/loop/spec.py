"""What a pipeline declares to have a closed loop (`PipelineDefinition.loop`): a `LoopSpec`.

The loop itself (`pipelines.loop.turn`) is written once; each pipeline says how its dataset is built from the
topics, how a candidate is trained on it, and how its holdout is measured (`Holdout`). A pipeline without a loop
declares none, and `streamscore loop|dataset|drift` do not offer it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.handle import ModelHandle
    from models.registry import ModelRegistry
    from pipelines.loop.labels import DatasetReport

#: The share of the newest rows a dataset holds out when nothing else is said.
DEFAULT_HOLDOUT_SHARE = 0.2
#: Dataset inputs besides the results and the feedback: the job's input topic, the state changelog.
EVENTS, CHANGELOG = "events", "changelog"


@dataclass(frozen=True)
class DatasetSources:
    """Where a dataset is built from, as of `until_ms`: the job's topics, the labels and where bad labels go."""

    bootstrap: str
    results_topic: str
    feedback_topic: str
    until_ms: int
    dlq_topic: str
    events_topic: str | None = None
    changelog_topic: str | None = None


@dataclass(frozen=True)
class DriftRequest:
    """What `streamscore drift` compares: the results (and the state changelog) of one job, the current window
    of event time against a reference one (None: the window before), and labels if given."""

    bootstrap: str
    results_topic: str
    changelog_topic: str
    window_ms: int
    reference: tuple[int, int] | None
    threshold: float
    feedback_topic: str | None
    report_dir: Path


@dataclass(frozen=True)
class DriftOutcome:
    """A drift measure's summary lines and the report it wrote."""

    summary: list[str]
    json_path: Path
    png_path: Path


@dataclass(frozen=True)
class Candidate:
    """A model trained on a dataset and registered unpromoted: its version and manifest."""

    version: int
    manifest: dict[str, Any]


class Holdout(ABC):
    """A dataset's time-ordered holdout: what every model of a turn is measured on."""

    @abstractmethod
    def evaluate(self, handle: ModelHandle) -> dict[str, Any]:
        """A registered model's metrics, replayed on the holdout."""

    @abstractmethod
    def served(self) -> dict[str, Any]:
        """The metrics of what production served on the holdout (the dataset's recorded results)."""

    @abstractmethod
    def streamed(self, results: dict[str, dict[str, Any]], topic: str) -> dict[str, Any]:
        """The metrics of the results (decoded JSON by event id) a job wrote to `topic`; `ConfigError` when a
        holdout event has none."""

    @abstractmethod
    def describe(self, candidate: Candidate) -> dict[str, Any]:
        """The report's `holdout` section (its size, time range, and `trained_to_ts` from the manifest)."""

    @property
    @abstractmethod
    def size_text(self) -> str:
        """The holdout's size in words, e.g. "8,000 rows" (the chart's title)."""


class LoopSpec(ABC):
    """A pipeline's part of the closed loop. `metrics`: what a candidate may be promoted on (the first is the
    default); `sources`: the dataset's inputs besides results and feedback (`EVENTS`, `CHANGELOG`)."""

    metrics: tuple[str, ...]
    sources: frozenset[str] = frozenset()

    @abstractmethod
    def synthetic_labels(self, events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
        """One feedback label per synthetic event (`operators.feedback.Label` as a dict), from the generator's
        ground truth, in event order."""

    @abstractmethod
    def build_dataset(self, sources: DatasetSources, out: Path) -> DatasetReport:
        """Write the point-in-time dataset as of `sources.until_ms` to the Parquet file `out`."""

    @abstractmethod
    def train(self, dataset: Path, registry: ModelRegistry, *, seed: int, holdout_share: float,
              from_scratch: bool) -> Candidate:
        """Train a candidate on the dataset's rows before its holdout and register it, not promoted."""

    @abstractmethod
    def holdout(self, dataset: Path, holdout_share: float) -> Holdout:
        """The dataset's holdout (`ConfigError` when it cannot be measured)."""

    #: Whether `measure_drift` is implemented (`streamscore drift` offers the pipeline).
    has_drift: bool = False

    def measure_drift(self, request: DriftRequest) -> DriftOutcome:
        """The drift of the job's inputs and scores between two windows, reported (`has_drift` pipelines)."""
        raise NotImplementedError(f"{type(self).__name__} measures no drift")

    def describe_dataset(self, report: DatasetReport) -> str:
        """One line on what a build wrote."""
        return f"{report.rows:,} labelled results ({report.positives:,} positive)"
