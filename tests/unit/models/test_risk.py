"""Risk model: torch vs ONNX parity, the exported interface, and the committed default risk@1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models.registry import DEFAULT_ROOT, ModelRegistry
from models.synthetic import generate_transactions
from models.training.risk import (
    RiskTrainingConfig,
    export_risk_onnx,
    predict_risk,
    risk_mlp_from_onnx,
    train_risk,
)
from operators.risk.features import FEATURE_NAMES
from pipelines.risk.training import risk_dataset, validation_mask
from pipelines.training import DEFAULT_SEED, evaluate


@pytest.fixture(scope="module")
def small_model_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, np.ndarray, Path]:
    data = risk_dataset(generate_transactions(20_000, seed=5))
    val = validation_mask(data.accounts)
    trained = train_risk(
        data.features[~val],
        data.labels[~val],
        data.features[val],
        data.labels[val],
        seed=5,
        config=RiskTrainingConfig(epochs=2),
    )
    path = export_risk_onnx(trained.model, tmp_path_factory.mktemp("risk") / "risk.onnx")
    return trained.model, data.features, path


def test_torch_and_onnx_agree(small_model_and_data: tuple[object, np.ndarray, Path], tmp_path: Path) -> None:
    model, features, path = small_model_and_data
    registry = ModelRegistry(tmp_path)
    registry.register("risk", path, {"feature_names": list(FEATURE_NAMES)})
    handle = registry.load("risk")
    for batch in (features[:1], features[:64], features[:4096]):
        expected = predict_risk(model, batch)  # type: ignore[arg-type]
        got = handle.run({"features": batch})["probability"]
        assert got.shape == (len(batch),) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_exported_interface(small_model_and_data: tuple[object, np.ndarray, Path]) -> None:
    _, _, path = small_model_and_data
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "features" and out.name == "probability"
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == 12


def test_committed_default_risk_model_loads_and_is_described() -> None:
    registry = ModelRegistry(DEFAULT_ROOT)  # the package's committed registry
    handle = registry.load("risk")
    manifest = handle.manifest
    assert handle.ref == f"risk@{manifest['version']}"
    assert manifest["feature_names"] == list(FEATURE_NAMES)
    assert manifest["training_seed"] == DEFAULT_SEED and manifest["quantized"] is False
    assert manifest["opset"] >= 17
    p = handle.run({"features": np.zeros((3, 12), dtype=np.float32)})["probability"]
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))


def test_default_risk_model_meets_its_goals_on_a_fresh_seed() -> None:
    metrics = evaluate("risk", seed=4242, events=40_000, registry=ModelRegistry(DEFAULT_ROOT))
    assert set(metrics) == {"roc_auc", "pr_auc", "rules_only_roc_auc"}
    assert metrics["roc_auc"] >= 0.95
    assert metrics["roc_auc"] - metrics["rules_only_roc_auc"] >= 0.10


def test_a_registered_risk_model_reads_back_and_fine_tunes_from_where_it_was(
    small_model_and_data: tuple[object, np.ndarray, Path], tmp_path: Path
) -> None:
    model, features, path = small_model_and_data
    restored = risk_mlp_from_onnx(path)
    np.testing.assert_allclose(predict_risk(restored, features[:512]), predict_risk(model, features[:512]),  # type: ignore[arg-type]
                               atol=1e-6)
    data = risk_dataset(generate_transactions(6_000, seed=8))
    half = len(data.labels) // 2
    tuned = train_risk(data.features[:half], data.labels[:half], data.features[half:], data.labels[half:], seed=1,
                       config=RiskTrainingConfig(epochs=1, lr=1e-9), initial=restored)
    # a vanishing learning rate keeps the weights and the standardisation it started from (only the calibration
    # is fitted anew), so the logits are the original model's
    for name in ("mean", "std", "net.0.weight", "net.4.bias"):
        np.testing.assert_allclose(tuned.model.state_dict()[name].numpy(), restored.state_dict()[name].numpy(),
                                   atol=1e-6)
    with torch.no_grad():
        x = torch.as_tensor(features[:512])
        np.testing.assert_allclose(tuned.model.logit(x).numpy(), restored.logit(x).numpy(), atol=1e-4)
    bare = onnx.load(str(path))
    del bare.graph.initializer[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="not a risk MLP"):
        risk_mlp_from_onnx(tmp_path / "bare.onnx")
