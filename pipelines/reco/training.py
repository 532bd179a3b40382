"""The session recommender's synthetic training and evaluation: synthetic click sessions -> torch GRU -> the ONNX
step the operator runs -> registry; evaluated by replaying sessions through that step (`models.session_replay`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.evaluation import hr_at_k, mrr_at_k, popularity_baseline
from models.handle import ModelHandle
from models.registry import ModelRegistry
from models.session_replay import NextItemPredictions, replay_sessions
from models.synthetic import CLICKS_GENERATOR_VERSION, generate_clicks, sessions_of
from pipelines.training import DEFAULT_EVAL_SEED, DEFAULT_SEED, Evaluation, generator_fields, unregistered_handle

RECO_TRAIN_EVENTS = 200_000
RECO_EVAL_EVENTS = 50_000
RECO_CATALOG_SIZE = 5000
RECO_K = 10
REPORT_KS = (1, 5, 10)


def reco_metrics(
    predictions: NextItemPredictions, all_items: np.ndarray, catalog_size: int
) -> dict[str, float]:
    """`hr_at_10`, `mrr_at_10` of the model and `popularity_hr_at_10` of the popularity baseline.

    The baseline ranks items by their frequency in the evaluated stream itself (an optimistic, in-sample
    popularity) and, like the model, skips items already seen in the session.
    """
    popular = popularity_baseline(all_items, predictions.targets, predictions.seen, catalog_size, k=RECO_K)
    return {
        "hr_at_10": round(hr_at_k(predictions.top_items, predictions.targets, RECO_K), 5),
        "mrr_at_10": round(mrr_at_k(predictions.top_items, predictions.targets, RECO_K), 5),
        "popularity_hr_at_10": round(hr_at_k(popular, predictions.targets, RECO_K), 5),
    }


def _reco_evaluation(handle: ModelHandle, seed: int, events: int) -> Evaluation:
    stream = generate_clicks(events, seed, catalog_size=int(handle.manifest["catalog_size"]))
    sessions = list(sessions_of(stream).values())
    predictions = replay_sessions(handle, sessions)
    catalog = int(handle.manifest["catalog_size"])
    all_items = np.array([int(e["item_id"]) for e in stream], dtype=np.int64)  # type: ignore[call-overload]
    popular = popularity_baseline(all_items, predictions.targets, predictions.seen, catalog, k=RECO_K)
    return Evaluation(
        "reco",
        handle.ref,
        seed,
        events,
        reco_metrics(predictions, all_items, catalog),
        hit_rates={
            f"model {handle.ref}": [
                round(hr_at_k(predictions.top_items, predictions.targets, k), 5) for k in REPORT_KS
            ],
            "popularity": [round(hr_at_k(popular, predictions.targets, k), 5) for k in REPORT_KS],
        },
        ks=REPORT_KS,
    )


def _train_reco(seed: int, registry: ModelRegistry, *, events: int, progress: bool, k: int = RECO_K) -> int:
    from models.training.reco import (
        POPULAR_ITEMS,
        RecoTrainingConfig,
        export_reco_step_onnx,
        popular_items,
        reco_manifest_fields,
        train_reco,
    )

    stream = generate_clicks(events, seed, catalog_size=RECO_CATALOG_SIZE)
    sessions = list(sessions_of(stream).values())
    config = RecoTrainingConfig()
    with tqdm(total=config.epochs, desc="reco epochs", unit="epoch", disable=not progress) as bar:

        def on_epoch(epoch: int, stats: dict[str, float]) -> None:
            bar.set_postfix(train_loss=f"{stats['train_loss']:.4f}")
            bar.update(1)

        trained = train_reco(sessions, RECO_CATALOG_SIZE, seed=seed, config=config, progress=on_epoch)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_reco_step_onnx(trained.model, Path(tmp) / "reco.onnx", k=k)
        stream_items = [int(e["item_id"]) for e in stream]  # type: ignore[call-overload]
        popular = popular_items(stream_items, RECO_CATALOG_SIZE, n=max(POPULAR_ITEMS, k))
        fields = reco_manifest_fields(trained, k=k, popular=popular, training_events=events)
        holdout_seed = seed + DEFAULT_EVAL_SEED
        result = _reco_evaluation(
            unregistered_handle(path, "reco", fields), holdout_seed, RECO_EVAL_EVENTS // 2
        )
        fields |= {
            "metrics": result.metrics,
            "metrics_holdout": {"seed": holdout_seed, "events": result.events},
            **generator_fields("models.synthetic.clicks", CLICKS_GENERATOR_VERSION, seed, events),
        }
        return registry.register("reco", path, fields)


def train(seed: int = DEFAULT_SEED, registry: ModelRegistry | None = None, *, events: int | None = None,
          progress: bool = True, k: int | None = None, large: bool = False) -> int:
    """Train the session GRU on a synthetic click stream of `seed`, export its step and register it; the new
    version (current only if there was none). `k` (default 10) is how many items the exported step ranks:
    operators may ask for up to `k`."""
    if large:
        raise ValueError("train: large applies to risk only, got 'reco'")
    if k is not None and not 1 <= k <= RECO_CATALOG_SIZE:
        raise ValueError(f"train: k applies to reco only, in [1, {RECO_CATALOG_SIZE}]; got k={k} for 'reco'")
    return _train_reco(seed, registry or ModelRegistry(), events=events or RECO_TRAIN_EVENTS, progress=progress,
                       k=k or RECO_K)


def evaluation(version: int | None = None, seed: int = DEFAULT_EVAL_SEED, events: int | None = None, *,
               registry: ModelRegistry | None = None, progress: bool = False) -> Evaluation:
    """Evaluate registered `reco@version` (current when None) on a fresh synthetic click stream of `seed`."""
    handle = (registry or ModelRegistry()).load("reco", version)
    return _reco_evaluation(handle, seed, events or RECO_EVAL_EVENTS)
