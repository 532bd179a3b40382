"""The risk model: a small MLP over the 12 risk features, trained in torch, calibrated, exported to ONNX.

The exported graph is self-contained: `features` float32 [N, 12] -> standardise (training mean/std baked
in as constants) -> MLP -> Platt scaling (`a * logit + b`, fitted on a validation split) -> sigmoid ->
`probability` float32 [N]. Training is deterministic for a seed (one torch thread, deterministic algorithms).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.evaluation import roc_auc

RISK_INPUT = "features"
RISK_OUTPUT = "probability"
OPSET = 17


@dataclass(frozen=True)
class RiskTrainingConfig:
    """Hyper-parameters of the risk MLP (defaults train in a few seconds on one CPU thread)."""

    hidden: tuple[int, ...] = (64, 32)
    epochs: int = 12
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    pos_weight: float = 5.0


class RiskMLP(nn.Module):
    """Standardise -> MLP -> Platt-calibrated sigmoid; `forward` returns the fraud probability [N]."""

    mean: torch.Tensor
    std: torch.Tensor
    platt_a: torch.Tensor
    platt_b: torch.Tensor

    def __init__(self, n_features: int, hidden: tuple[int, ...], mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("platt_a", torch.tensor(1.0))
        self.register_buffer("platt_b", torch.tensor(0.0))
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """The uncalibrated logit [N]."""
        x = (features - self.mean) / self.std
        return self.net(x).reshape(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The calibrated probability [N]."""
        return torch.sigmoid(self.platt_a * self.logit(features) + self.platt_b)


@dataclass
class TrainedRisk:
    """A trained risk model with what was learnt about its training."""

    model: RiskMLP
    seed: int
    val_roc_auc: float
    platt: tuple[float, float]
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def set_determinism(seed: int) -> None:
    """Seed torch and pin it to one thread with deterministic algorithms (same seed -> same weights)."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def _fit_platt(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Fit `sigmoid(a * logit + b)` to the labels by maximum likelihood (LBFGS)."""
    a = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    optimiser = torch.optim.LBFGS([a, b], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    loss_fn = nn.BCEWithLogitsLoss()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = loss_fn(a * logits + b, labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(a.detach()), float(b.detach())


def train_risk(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int,
    config: RiskTrainingConfig | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    initial: RiskMLP | None = None,
) -> TrainedRisk:
    """Train the MLP on (x_train, y_train); keep the epoch with the best validation ROC-AUC; Platt-calibrate
    on the validation split. `progress(epoch, stats)` is called after every epoch. `initial`: fine-tune a copy
    of this model (its standardisation and layer sizes; `config.hidden` is not used) instead of starting from
    random weights."""
    config = config or RiskTrainingConfig()
    started = time.perf_counter()
    set_determinism(seed)
    if initial is None:
        mean = x_train.mean(axis=0)
        std = np.maximum(x_train.std(axis=0), 1e-3)
        model = RiskMLP(x_train.shape[1], config.hidden, mean, std)
    else:
        model = RiskMLP(x_train.shape[1], _hidden_of(initial), initial.mean.numpy().copy(),
                        initial.std.numpy().copy())
        model.load_state_dict(initial.state_dict())
        model.platt_a.fill_(1.0)  # calibrated anew below
        model.platt_b.fill_(0.0)
    xt = torch.as_tensor(x_train, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.float32)
    xv = torch.as_tensor(x_val, dtype=torch.float32)
    yv = torch.as_tensor(y_val, dtype=torch.float32)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(config.pos_weight))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    generator = torch.Generator().manual_seed(seed)
    best_auc, best_state = -1.0, {k: v.clone() for k, v in model.state_dict().items()}
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), config.batch_size):
            idx = order[start : start + config.batch_size]
            optimiser.zero_grad()
            loss = loss_fn(model.logit(xt[idx]), yt[idx])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        scheduler.step()
        model.eval()
        with torch.no_grad():
            val_auc = roc_auc(y_val, model.logit(xv).numpy())
        stats = {"epoch": float(epoch + 1), "train_loss": total / len(xt), "val_roc_auc": val_auc}
        history.append(stats)
        if progress is not None:
            progress(epoch + 1, stats)
        if val_auc > best_auc:
            best_auc, best_state = val_auc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        val_logits = model.logit(xv)
    a, b = _fit_platt(val_logits, yv)
    model.platt_a.fill_(a)
    model.platt_b.fill_(b)
    return TrainedRisk(model, seed, best_auc, (a, b), time.perf_counter() - started, history)


def _hidden_of(model: RiskMLP) -> tuple[int, ...]:
    return tuple(layer.out_features for layer in model.net if isinstance(layer, nn.Linear))[:-1]


def risk_mlp_from_onnx(path: Path) -> RiskMLP:
    """The `RiskMLP` that `export_risk_onnx` wrote to `path` (weights, standardisation and calibration read back
    from the graph's initializers), to fine-tune a registered model; `ValueError` if the graph is not one."""
    import onnx
    from onnx import numpy_helper

    weights = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}
    layers = sorted((int(name.split(".")[1]), value) for name, value in weights.items()
                    if name.startswith("net.") and name.endswith(".weight"))
    if not layers or not {"mean", "std", "platt_a", "platt_b"} <= set(weights):
        raise ValueError(f"{path} is not a risk MLP exported by this version (weights not found)")
    hidden = tuple(int(value.shape[0]) for _, value in layers[:-1])
    model = RiskMLP(int(weights["mean"].shape[0]), hidden, np.array(weights["mean"]), np.array(weights["std"]))
    try:
        model.load_state_dict({name: torch.from_numpy(np.array(value, dtype=np.float32))
                               for name, value in weights.items()})
    except RuntimeError as exc:
        raise ValueError(f"{path} is not a risk MLP exported by this version: {exc}") from None
    return model.eval()


def predict_risk(model: RiskMLP, features: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of the torch model (float32 [N]); the reference for ONNX parity tests."""
    model.eval()
    with torch.no_grad():
        return model(torch.as_tensor(features, dtype=torch.float32)).numpy().astype(np.float32)


def export_risk_onnx(model: RiskMLP, path: Path) -> Path:
    """Export to ONNX (opset 17, TorchScript exporter): `features` f32 [N, 12] -> `probability` f32 [N]."""
    model.eval()
    dummy = torch.zeros(2, int(model.mean.shape[0]), dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[RISK_INPUT],
            output_names=[RISK_OUTPUT],
            dynamic_axes={RISK_INPUT: {0: "N"}, RISK_OUTPUT: {0: "N"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def risk_manifest_fields(
    trained: TrainedRisk, feature_names: tuple[str, ...], **extra: Any
) -> dict[str, Any]:
    """The manifest fields describing a trained risk model (the registry adds sha256, schema, opset …)."""
    return {
        "kind": "risk_mlp",
        "feature_names": list(feature_names),
        "training_seed": trained.seed,
        "training_seconds": round(trained.seconds, 2),
        "val_roc_auc": round(trained.val_roc_auc, 5),
        "calibration": {"method": "platt", "a": trained.platt[0], "b": trained.platt[1]},
        "hidden": list(_hidden_of(trained.model)),  # the trained layers (not the default config's)
        **extra,
    }
