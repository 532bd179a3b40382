"""INT8 dynamic quantisation keeps quality within bounds, and is registered as a non-current version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.quantization import quantize_registered
from models.registry import DEFAULT_ROOT, ModelRegistry
from pipelines.training import evaluate


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("int8") / "registry"
    for name in ("risk", "reco"):
        shutil.copytree(DEFAULT_ROOT / name, root / name)
    return ModelRegistry(root)


def test_int8_version_is_registered_but_not_current(registry: ModelRegistry) -> None:
    current = registry.current("risk")
    assert current == 3  # the shipped one
    version = quantize_registered(registry, "risk")
    manifest = registry.manifest("risk", version)
    assert manifest["quantized"] is True and manifest["quantized_from"] == current
    assert manifest["feature_names"] == registry.manifest("risk", current)["feature_names"]
    assert manifest["generator"] == registry.manifest("risk", current)["generator"]  # copied: it was trained on it
    assert registry.current("risk") == current
    assert registry.model_path("risk", version).stat().st_size < registry.model_path("risk", current).stat().st_size


def test_risk_int8_roc_auc_drop_is_at_most_0_01(registry: ModelRegistry) -> None:
    version = quantize_registered(registry, "risk", 3)
    fp32 = evaluate("risk", 3, seed=777, events=40_000, registry=registry)
    int8 = evaluate("risk", version, seed=777, events=40_000, registry=registry)
    assert fp32["roc_auc"] - int8["roc_auc"] <= 0.01


def test_reco_int8_hr_at_10_drop_is_at_most_0_02(registry: ModelRegistry, tmp_path: Path) -> None:
    version = quantize_registered(registry, "reco", 2)
    assert registry.manifest("reco", version)["catalog_size"] == 5000
    fp32 = evaluate("reco", 2, seed=777, events=15_000, registry=registry)
    int8 = evaluate("reco", version, seed=777, events=15_000, registry=registry)
    assert fp32["hr_at_10"] - int8["hr_at_10"] <= 0.02
