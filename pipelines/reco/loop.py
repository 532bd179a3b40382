"""The reco pipeline's part of the closed loop (`pipelines.loop`): datasets of scored clicks with the purchases
known by then (`pipelines.reco.dataset`), candidates fine-tuned on the sessions before the cutoff
(`pipelines.reco.retraining`), measured by HR@10, MRR@10 and purchase HR@10 on the sessions after it.

Offline, a model is replayed through the holdout sessions (the operator's exact step); in the backtest, the
holdout's metrics are taken from the shadow topic and from the production topic, so the decision rests on what
the streaming path recommends (every session's hidden state is the candidate's own: the shadow job runs from the
input's start)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.exceptions import ConfigError
from pipelines.loop.spec import EVENTS, Candidate, DatasetSources, Holdout, LoopSpec

if TYPE_CHECKING:
    from models.handle import ModelHandle
    from models.registry import ModelRegistry
    from pipelines.loop.labels import DatasetReport
    from pipelines.reco.retraining import RecoSplits


class RecoHoldout(Holdout):
    """The sessions of a reco dataset that start at or after its cutoff."""

    def __init__(self, splits: RecoSplits) -> None:
        self.splits = splits
        self.sessions = splits.holdout()

    def evaluate(self, handle: ModelHandle) -> dict[str, Any]:
        from pipelines.reco.retraining import evaluate_reco_on_dataset

        return evaluate_reco_on_dataset(handle, self.splits)

    def served(self) -> dict[str, Any]:
        from pipelines.reco.retraining import production_reco_metrics

        return production_reco_metrics(self.splits)

    def streamed(self, results: dict[str, dict[str, Any]], topic: str) -> dict[str, Any]:
        from pipelines.reco.retraining import metrics_at_k

        missing = [e for s in self.sessions for e in s.event_ids if e not in results]
        if missing:
            raise ConfigError(f"{len(missing)} holdout clicks have no result on {topic!r} (e.g. {missing[0]!r})")
        return metrics_at_k(self.sessions, {(i, t): results[e]["items"] for i, s in enumerate(self.sessions)
                                            for t, e in enumerate(s.event_ids)})

    def describe(self, candidate: Candidate) -> dict[str, Any]:
        manifest = candidate.manifest
        holdout = manifest["metrics_holdout"]
        return {"sessions": holdout["sessions"], "positions": manifest["metrics"]["positions"],
                "purchase_positions": manifest["metrics"]["purchase_positions"], "from_ts": holdout["from_ts"],
                "to_ts": holdout["to_ts"], "trained_to_ts": manifest["dataset"]["trained_to_ts"]}

    @property
    def size_text(self) -> str:
        return f"{len(self.sessions):,} sessions"


class RecoLoop(LoopSpec):
    """Purchases as labels, the input's clicks as rows, HR@10 (default), MRR@10 or purchase HR@10 to promote."""

    metrics = ("hr_at_10", "mrr_at_10", "purchase_hr_at_10")
    sources = frozenset({EVENTS})

    def synthetic_labels(self, events: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
        from pipelines.reco.feedback import purchase_labels

        return purchase_labels(events, seed)

    def build_dataset(self, sources: DatasetSources, out: Path) -> DatasetReport:
        from pipelines.reco.dataset import build_reco_dataset

        assert sources.events_topic is not None  # `sources` asks for it
        return build_reco_dataset(sources.bootstrap, events_topic=sources.events_topic,
                                  results_topic=sources.results_topic, feedback_topic=sources.feedback_topic,
                                  until_ms=sources.until_ms, out=out, dlq_topic=sources.dlq_topic)

    def describe_dataset(self, report: DatasetReport) -> str:
        sessions = getattr(report, "sessions", 0)
        return f"{report.rows:,} scored clicks of {sessions:,} sessions ({report.positives:,} bought)"

    def train(self, dataset: Path, registry: ModelRegistry, *, seed: int, holdout_share: float,
              from_scratch: bool) -> Candidate:
        from pipelines.reco.retraining import train_reco_on_dataset

        return Candidate(*train_reco_on_dataset(dataset, registry, seed=seed, holdout_share=holdout_share,
                                                from_scratch=from_scratch))

    def holdout(self, dataset: Path, holdout_share: float) -> Holdout:
        from pipelines.reco.retraining import load_reco_splits

        return RecoHoldout(load_reco_splits(dataset, holdout_share))
