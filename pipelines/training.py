"""Model training orchestration: synthetic events -> the operators' feature code -> torch -> ONNX -> registry.

`train(name, seed, registry)` and `evaluate(name, version, seed, events)` are what the `streamscore models`
CLI calls. Risk features are computed with exactly the streaming operator's code
(`operators.risk.features.update`, one state per account, events in `ts` order), so training and serving
cannot drift apart.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.evaluation import hr_at_k, mrr_at_k, popularity_baseline, pr_auc, roc_auc, roc_curve
from models.handle import ModelHandle, file_sha256
from models.registry import ModelRegistry
from models.rules import RISK_FEATURE_NAMES, rules_score
from models.session_replay import NextItemPredictions, replay_sessions
from models.synthetic import (
    CLICKS_GENERATOR_VERSION,
    TRANSACTIONS_GENERATOR_VERSION,
    generate_clicks,
    generate_transactions,
    sessions_of,
)
from operators.risk.features import FEATURE_NAMES, RiskFeatureState, TransactionView, update

DEFAULT_SEED = 1
DEFAULT_EVAL_SEED = 1001  # a holdout stream the default models never saw
RISK_TRAIN_EVENTS = 200_000
RISK_EVAL_EVENTS = 100_000
RECO_TRAIN_EVENTS = 200_000
RECO_EVAL_EVENTS = 50_000
RECO_CATALOG_SIZE = 5000
RECO_K = 10
REPORT_KS = (1, 5, 10)
MODEL_NAMES = ("risk", "reco")

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


@dataclass
class Evaluation:
    """An evaluation run: the headline metrics plus what the report plots (curves, HR@k)."""

    name: str
    ref: str
    seed: int
    events: int
    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    hit_rates: dict[str, list[float]] = field(default_factory=dict)
    ks: tuple[int, ...] = ()


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


def generator_fields(module: str, version: int, seed: int, events: int) -> dict[str, Any]:
    """The manifest's `generator`: which synthetic generator (module and `GENERATOR_VERSION`), seed and size the
    model was trained on, so a model can be traced to (and retrained on) the very stream."""
    return {"generator": {"module": module, "version": version, "seed": seed, "events": events}}


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
        handle = _unregistered_handle(path, name, {})  # the metrics describe the shipped file
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


def _unregistered_handle(path: Path, name: str, fields: dict[str, Any]) -> ModelHandle:
    """A handle on a freshly exported file (version 0), to measure it before it is registered."""
    return ModelHandle(path, {**fields, "name": name, "version": 0, "sha256": file_sha256(path)})


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
            _unregistered_handle(path, "reco", fields), holdout_seed, RECO_EVAL_EVENTS // 2
        )
        fields |= {
            "metrics": result.metrics,
            "metrics_holdout": {"seed": holdout_seed, "events": result.events},
            **generator_fields("models.synthetic.clicks", CLICKS_GENERATOR_VERSION, seed, events),
        }
        return registry.register("reco", path, fields)


def train(
    name: str,
    seed: int = DEFAULT_SEED,
    registry: ModelRegistry | None = None,
    *,
    events: int | None = None,
    progress: bool = True,
    k: int | None = None,
    large: bool = False,
) -> int:
    """Train model `name` ("risk" or "reco") on a synthetic stream of `seed`, export it and register it;
    returns the new version (it becomes current only if the name had no current version).

    `large` (risk only) trains the wider MLP registered as `risk-large` (`RISK_LARGE_HIDDEN`).

    `k` (reco only, default 10) is how many items the exported step ranks: operators may ask for up to `k`.
    """
    registry = registry or ModelRegistry()
    if k is not None and (name != "reco" or not 1 <= k <= RECO_CATALOG_SIZE):
        raise ValueError(f"train: k applies to reco only, in [1, {RECO_CATALOG_SIZE}]; got k={k} for {name!r}")
    if large and name != "risk":
        raise ValueError(f"train: large applies to risk only, got {name!r}")
    if name == "risk":
        return _train_risk(seed, registry, events=events or RISK_TRAIN_EVENTS, progress=progress, large=large)
    if name == "reco":
        return _train_reco(seed, registry, events=events or RECO_TRAIN_EVENTS, progress=progress, k=k or RECO_K)
    raise ValueError(f"train: unknown model {name!r}; expected one of {list(MODEL_NAMES)}")


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


def evaluation(
    name: str,
    version: int | None = None,
    seed: int = DEFAULT_EVAL_SEED,
    events: int | None = None,
    *,
    registry: ModelRegistry | None = None,
    progress: bool = False,
) -> Evaluation:
    """Evaluate registered `name@version` (current when None) on a fresh synthetic stream of `seed`."""
    registry = registry or ModelRegistry()
    handle = registry.load(name, version)
    if name == "risk":
        return _evaluate_risk(handle, seed, events or RISK_EVAL_EVENTS, progress)
    if name == "reco":
        return _reco_evaluation(handle, seed, events or RECO_EVAL_EVENTS)
    raise ValueError(f"evaluate: unknown model {name!r}; expected one of {list(MODEL_NAMES)}")


def evaluate(
    name: str,
    version: int | None = None,
    seed: int = DEFAULT_EVAL_SEED,
    events: int | None = None,
    *,
    registry: ModelRegistry | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Metrics of registered model `name@version` (current when None) on a fresh stream of `seed`.

    risk: `roc_auc`, `pr_auc`, `rules_only_roc_auc`; reco: `hr_at_10`, `mrr_at_10`, `popularity_hr_at_10`.
    """
    return evaluation(name, version, seed, events, registry=registry, progress=progress).metrics


def write_report(result: Evaluation, report_dir: Path) -> tuple[Path, Path]:
    """Write `<name>@<version>-seed<seed>.json` (metrics and run description) and the PNG next to it."""
    from models.reporting import plot_hit_rates, plot_roc

    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.ref}-seed{result.seed}"
    json_path = report_dir / f"{stem}.json"
    payload = {
        "model": result.ref,
        "seed": result.seed,
        "events": result.events,
        "metrics": result.metrics,
        "hit_rates": {"k": list(result.ks), **result.hit_rates} if result.ks else None,
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    png_path = report_dir / f"{stem}.png"
    title = f"{result.ref} on seed {result.seed} ({result.events:,} events)"
    if result.curves:
        plot_roc(png_path, result.curves, title, result.metrics)
    else:
        plot_hit_rates(png_path, result.ks, result.hit_rates, title, result.metrics)
    return json_path, png_path
