"""Training and evaluating the session recommender on a point-in-time dataset (`pipelines.reco.dataset`).

Time-ordered split: the dataset's rows are ordered by event time and the time of the row at
`1 - holdout_share` is the cutoff. The sessions that start at or after it are the holdout (never trained on);
every session's clicks before the cutoff are training input (a session running across the cutoff trains on
its part before it and is not evaluated), so no evaluated click is older than a trained one.

Training is the synthetic trainer's (`models.training.reco.train_reco`) with the purchases as weights:
predicting an item the session went on to buy counts `PURCHASE_WEIGHT` times as much as predicting a browsed
one. Items outside production's catalogue are inputs (the OOV row) but never targets. By default the candidate
is production fine-tuned on the dataset (its weights read back from its ONNX graph, then `FINE_TUNING_EPOCHS`
epochs at `FINE_TUNING_LR`): a dataset is days of sessions, far fewer than the model was first trained on, and
from scratch it would forget what the older traffic taught (measured on 30,000 clicks of unchanged traffic:
from scratch HR@10 0.15, fine-tuned 0.389, production 0.387; after the generator's `new-season` drift,
80,000 clicks: fine-tuned 0.312 where production fell to 0.219). `from_scratch` trains a new one with
production's sizes. Either way the candidate keeps production's catalogue, embedding and hidden sizes, so it
can take over the running job's sessions.

Metrics on the holdout, over every click followed by an item new to its session:
- `hr_at_10` / `mrr_at_10`: the next item is in the top 10 / its reciprocal rank;
- `purchase_hr_at_10`: the same hit rate over the clicks followed by an item the session bought - a
  recommendation that could have sold something.
For production they come from what it served (the dataset's `recommended`, never re-run); for a candidate from
replaying the holdout sessions through it (`models.session_replay`), the operator's exact step.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import hr_at_k, mrr_at_k
from models.handle import ModelHandle, file_sha256
from models.registry import ModelRegistry
from models.session_replay import replay_sessions
from pipelines.exceptions import ConfigError
from pipelines.loop.dataset_file import dataset_metadata
from pipelines.loop.spec import DEFAULT_HOLDOUT_SHARE

PURCHASE_WEIGHT = 4.0
K = 10
FINE_TUNING_EPOCHS, FINE_TUNING_LR = 4, 4e-3


@dataclass(frozen=True)
class Session:
    """One session's clicks in event order, with what each click led to."""

    session_id: str
    items: list[int]
    ts: list[int]
    bought: list[bool]  # the session bought this click's item (a label 1 known by the dataset's `until`)
    recommended: list[list[int]]  # what production recommended after this click
    event_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RecoSplits:
    """A reco dataset's sessions (by first click) and its time-ordered cutoff."""

    sessions: list[Session]
    cutoff_ts: int
    metadata: dict[str, Any]

    def training(self) -> list[Session]:
        """Every session's clicks before the cutoff (sessions with at least two of them)."""
        out = []
        for s in self.sessions:
            n = sum(1 for t in s.ts if t < self.cutoff_ts)
            if n >= 2:
                out.append(Session(s.session_id, s.items[:n], s.ts[:n], s.bought[:n], s.recommended[:n],
                                   s.event_ids[:n]))
        return out

    def holdout(self) -> list[Session]:
        """The sessions that start at or after the cutoff."""
        return [s for s in self.sessions if s.ts[0] >= self.cutoff_ts]


def load_reco_splits(path: Path, holdout_share: float = DEFAULT_HOLDOUT_SHARE) -> RecoSplits:
    """Read the reco dataset `path` and split it by time (module doc); `ConfigError` when a split is empty."""
    import pyarrow.parquet as pq

    if not 0 < holdout_share < 1:
        raise ConfigError(f"--holdout-share must be between 0 and 1, got {holdout_share}")
    metadata = dataset_metadata(path, "reco")
    table = pq.read_table(path).to_pydict()
    order = sorted(range(len(table["ts"])), key=lambda i: (table["ts"][i], table["event_id"][i]))
    if not order:
        raise ConfigError(f"{path} has no rows: build it over a time with results")
    sessions: dict[str, Session] = {}
    for i in order:
        session_id = table["session_id"][i]
        s = sessions.get(session_id)
        if s is None:
            s = sessions[session_id] = Session(session_id, [], [], [], [], [])
        s.items.append(int(table["item_id"][i]))
        s.ts.append(int(table["ts"][i]))
        s.bought.append(table["label"][i] == 1)
        s.recommended.append([int(item) for item in table["recommended"][i]])
        s.event_ids.append(table["event_id"][i])
    cutoff_ts = int(table["ts"][order[len(order) - int(len(order) * holdout_share) - 1]]) + 1
    splits = RecoSplits(list(sessions.values()), cutoff_ts, metadata)
    if not splits.training():
        raise ConfigError(f"{path} has no session with two clicks before the holdout: build it over a longer time "
                          "or lower --holdout-share")
    if not holdout_positions(splits.holdout()):
        raise ConfigError(f"{path}'s holdout (sessions from {cutoff_ts}) has no click followed by a new item: build "
                          "it over a longer time or raise --holdout-share")
    return splits


def holdout_positions(sessions: list[Session]) -> list[tuple[int, int]]:
    """`(session index, t)` of every click followed by an item new to its session (what can be a hit)."""
    return [(i, t) for i, s in enumerate(sessions) for t in range(len(s.items) - 1)
            if s.items[t + 1] not in s.items[: t + 1]]


def metrics_at_k(sessions: list[Session], top: dict[tuple[int, int], list[int]], k: int = K) -> dict[str, Any]:
    """`hr_at_10`, `mrr_at_10`, `purchase_hr_at_10` (module doc) of the top items `top[(session, t)]`."""
    positions = holdout_positions(sessions)
    ranked = np.full((len(positions), k), -1, dtype=np.int64)  # -1 pads a shorter list: never a target
    for row, (i, t) in enumerate(positions):
        items = top[(i, t)][:k]
        ranked[row, : len(items)] = items
    targets = np.array([sessions[i].items[t + 1] for i, t in positions], dtype=np.int64)
    bought = np.array([sessions[i].bought[t + 1] for i, t in positions], dtype=bool)
    return {f"hr_at_{k}": round(hr_at_k(ranked, targets, k), 5), f"mrr_at_{k}": round(mrr_at_k(ranked, targets, k), 5),
            f"purchase_hr_at_{k}": round(hr_at_k(ranked[bought], targets[bought], k), 5) if bought.any() else None,
            "positions": len(positions), "purchase_positions": int(bought.sum())}


def production_reco_metrics(splits: RecoSplits) -> dict[str, Any]:
    """The holdout metrics of what production served (the dataset's `recommended`)."""
    sessions = splits.holdout()
    return metrics_at_k(sessions, {(i, t): s.recommended[t] for i, s in enumerate(sessions)
                                   for t in range(len(s.items))})


def evaluate_reco_on_dataset(handle: ModelHandle, splits: RecoSplits) -> dict[str, Any]:
    """A step model's holdout metrics, replaying the holdout sessions through it."""
    sessions = splits.holdout()
    predictions = replay_sessions(handle, [s.items for s in sessions])
    top = {position: row.tolist() for position, row in zip(predictions.positions, predictions.top_items,
                                                           strict=True)}
    return metrics_at_k(sessions, top)


def training_weights(sessions: list[Session], catalog_size: int) -> list[list[float]]:
    """Each click's weight as a target: `PURCHASE_WEIGHT` if bought, 1, or 0 outside the catalogue."""
    return [[0.0 if not 0 <= item < catalog_size else PURCHASE_WEIGHT if bought else 1.0
             for item, bought in zip(s.items, s.bought, strict=True)] for s in sessions]


def train_reco_on_dataset(
    path: Path, registry: ModelRegistry, *, seed: int = 1, holdout_share: float = DEFAULT_HOLDOUT_SHARE,
    from_scratch: bool = False,
) -> tuple[int, dict[str, Any]]:
    """Fine-tune production (or train a new model, `from_scratch`) on the dataset's clicks before the cutoff,
    register it (not promoted); (version, manifest)."""
    from models.training.reco import (
        POPULAR_ITEMS,
        RecoTrainingConfig,
        export_reco_step_onnx,
        popular_items,
        reco_manifest_fields,
        session_gru_from_onnx,
        train_reco,
    )

    splits = load_reco_splits(path, holdout_share)
    production = registry.load("reco")
    catalog, k = int(production.manifest["catalog_size"]), int(production.manifest.get("k", K))
    sizes = {"embedding_size": int(production.manifest["embedding_size"]),
             "hidden_size": int(production.manifest["hidden_size"])}
    initial = None if from_scratch else session_gru_from_onnx(production.path, catalog, **sizes)
    config = RecoTrainingConfig(**sizes) if from_scratch else RecoTrainingConfig(
        **sizes, epochs=FINE_TUNING_EPOCHS, lr=FINE_TUNING_LR)
    training = splits.training()
    trained = train_reco([s.items for s in training], catalog, seed=seed, config=config,
                         target_weights=training_weights(training, catalog), initial=initial)
    clicks = [item for s in training for item in s.items]
    meta = splits.metadata
    holdout = splits.holdout()
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export_reco_step_onnx(trained.model, Path(tmp) / "reco.onnx", k=k)
        popular = popular_items(clicks, catalog, n=max(POPULAR_ITEMS, k))
        fields = reco_manifest_fields(trained, k=k, popular=popular, training_events=len(clicks))
        metrics = evaluate_reco_on_dataset(ModelHandle(onnx, {**fields, "name": "reco", "version": 0,
                                                              "sha256": file_sha256(onnx)}), splits)
        fields |= {
            "metrics": metrics,
            "metrics_holdout": {"dataset": str(path.resolve()), "sessions": len(holdout),
                                "from_ts": splits.cutoff_ts, "to_ts": max(s.ts[-1] for s in holdout),
                                "production": production_reco_metrics(splits)},
            "purchase_weight": PURCHASE_WEIGHT,
            "fine_tuned_from": None if from_scratch else production.ref,
            "dataset": {"path": str(path.resolve()), "sha256": file_sha256(path), "until_ms": meta.get("until_ms"),
                        "events_topic": meta.get("events_topic"), "results_topic": meta.get("results_topic"),
                        "feedback_topic": meta.get("feedback_topic"), "rows": meta["report"]["rows"],
                        "sessions": len(splits.sessions), "purchases": meta["report"]["positives"],
                        "from_ts": min(s.ts[0] for s in splits.sessions),
                        "to_ts": max(s.ts[-1] for s in splits.sessions), "trained_to_ts": splits.cutoff_ts - 1,
                        "holdout_share": holdout_share},
        }
        version = registry.register("reco", onnx, fields, promote=False)
    return version, registry.manifest("reco", version)
