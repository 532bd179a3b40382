"""The risk model's synthetic training and evaluation: synthetic transactions -> the operator's feature code ->
torch -> ONNX -> registry. Features are computed with exactly the streaming operator's code
(`operators.risk.features.update`, one state per account, events in `ts` order), so training and serving
cannot drift apart.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.evaluation import pr_auc, roc_auc, roc_curve
from models.handle import ModelHandle
from models.registry import ModelRegistry
from models.rules import RISK_FEATURE_NAMES, rules_score
from models.synthetic import TRANSACTIONS_GENERATOR_VERSION, generate_transactions
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, TransactionView, update
from pipelines.training import DEFAULT_EVAL_SEED, DEFAULT_SEED, Evaluation, generator_fields, unregistered_handle

RISK_TRAIN_EVENTS = 200_000
RISK_EVAL_EVENTS = 100_000

if tuple(FEATURE_NAMES) != RISK_FEATURE_NAMES:  # pragma: no cover - guards the copy in models.rules
    raise ImportError(
        "operators.risk.features.FEATURE_NAMES and models.rules.RISK_FEATURE_NAMES differ: "
        f"{FEATURE_NAMES} vs {RISK_FEATURE_NAMES}; update models/rules.py (and retrain)"
    )


@dataclass(frozen=True)
class RiskDataset:
    """Risk features of a transaction stream, with labels, fraud patterns and account ids (stream order)."""

    features: np.ndarray  # float32 [N, 12]
    labels: np.ndarray  # int64 [N]
    patterns: np.ndarray  # str [N]
    accounts: np.ndarray  # str [N]


def risk_dataset(events: Sequence[dict[str, Any]], *, progress: bool = False) -> RiskDataset:
    """Fold `events` (sorted by ts) through the operator's feature update, one state per account."""
    states: dict[str, RiskFeatureState] = {}
    features = np.empty((len(events), len(FEATURE_NAMES)), dtype=np.float32)
    for i, event in enumerate(
        tqdm(events, desc="risk features", unit="ev", disable=not progress, miniters=10_000)
    ):
        account = str(event["account_id"])
        state = states.get(account) or RiskFeatureState()
        view = TransactionView(
            float(event["amount"]),
            str(event["merchant_id"]),
            str(event["country"]),
            str(event["device_id"]),
            int(event["ts"]),
        )
        states[account], features[i] = update(state, view)
    return RiskDataset(
        features,
        np.array([int(e["label"]) for e in events], dtype=np.int64),
        np.array([str(e["pattern"]) for e in events]),
        np.array([str(e["account_id"]) for e in events]),
    )


def validation_mask(accounts: np.ndarray, share: int = 5) -> np.ndarray:
    """Rows whose account falls in the validation split (1 in `share` accounts, by a stable hash)."""
    return np.array([zlib.crc32(a.encode()) % share == 0 for a in accounts], dtype=bool)


def risk_metrics(data: RiskDataset, probability: np.ndarray) -> dict[str, float]:
    """`roc_auc`, `pr_auc` of the model's probabilities and `rules_only_roc_auc` of the rules baseline."""
    return {
        "roc_auc": round(roc_auc(data.labels, probability), 5),
        "pr_auc": round(pr_auc(data.labels, probability), 5),
        "rules_only_roc_auc": round(roc_auc(data.labels, rules_score(data.features)), 5),
    }


#: The larger risk model (`models train risk --large`): a wider, deeper MLP registered as `risk-large`, for a
#: route served by a model server (operators.remote) so that the route scores differently from `risk`.
RISK_LARGE_NAME = "risk-large"
RISK_LARGE_HIDDEN = (256, 128, 64)


def _train_risk(seed: int, registry: ModelRegistry, *, events: int, progress: bool, large: bool = False) -> int:
    from models.training.risk import RiskTrainingConfig, export_risk_onnx, risk_manifest_fields, train_risk

    name = RISK_LARGE_NAME if large else "risk"
    config = RiskTrainingConfig(hidden=RISK_LARGE_HIDDEN) if large else RiskTrainingConfig()

    stream = generate_transactions(events, seed)
    data = risk_dataset(stream, progress=progress)
    val = validation_mask(data.accounts)
    with tqdm(total=12, desc="risk epochs", unit="epoch", disable=not progress) as bar:

        def on_epoch(epoch: int, stats: dict[str, float]) -> None:
            bar.set_postfix(val_roc_auc=f"{stats['val_roc_auc']:.4f}")
            bar.update(1)

        trained = train_risk(
            data.features[~val],
            data.labels[~val],
            data.features[val],
            data.labels[val],
            seed=seed,
            config=config,
            progress=on_epoch,
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = export_risk_onnx(trained.model, Path(tmp) / "risk.onnx")
        holdout_seed = seed + DEFAULT_EVAL_SEED
        holdout = risk_dataset(generate_transactions(RISK_EVAL_EVENTS // 2, holdout_seed))
        handle = unregistered_handle(path, name, {})  # the metrics describe the shipped file
        probability = handle.run({"features": holdout.features})["probability"]
        metrics = risk_metrics(holdout, probability)
        fields = risk_manifest_fields(
            trained,
            tuple(FEATURE_NAMES),
            metrics=metrics,
            metrics_holdout={"seed": holdout_seed, "events": RISK_EVAL_EVENTS // 2},
            training_events=events,
            **generator_fields("models.synthetic.transactions", TRANSACTIONS_GENERATOR_VERSION, seed, events),
        )
        return registry.register(name, path, fields)


def train(seed: int = DEFAULT_SEED, registry: ModelRegistry | None = None, *, events: int | None = None,
          progress: bool = True, k: int | None = None, large: bool = False) -> int:
    """Train the risk model on a synthetic stream of `seed`, export it and register it; the new version (current
    only if there was none). `large` trains the wider MLP registered as `risk-large` (`RISK_LARGE_HIDDEN`)."""
    if k is not None:
        raise ValueError(f"train: k applies to reco only, got k={k} for 'risk'")
    return _train_risk(seed, registry or ModelRegistry(), events=events or RISK_TRAIN_EVENTS, progress=progress,
                       large=large)


def _evaluate_risk(handle: ModelHandle, seed: int, events: int, progress: bool) -> Evaluation:
    data = risk_dataset(generate_transactions(events, seed), progress=progress)
    probability = handle.run({"features": data.features})["probability"]
    return Evaluation(
        "risk",
        handle.ref,
        seed,
        events,
        risk_metrics(data, probability),
        curves={
            f"model {handle.ref}": roc_curve(data.labels, probability),
            "rules only": roc_curve(data.labels, rules_score(data.features)),
        },
    )


def evaluation(version: int | None = None, seed: int = DEFAULT_EVAL_SEED, events: int | None = None, *,
               registry: ModelRegistry | None = None, progress: bool = False) -> Evaluation:
    """Evaluate registered `risk@version` (current when None) on a fresh synthetic stream of `seed`."""
    handle = (registry or ModelRegistry()).load("risk", version)
    return _evaluate_risk(handle, seed, events or RISK_EVAL_EVENTS, progress)
