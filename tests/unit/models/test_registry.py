"""Registry and ModelHandle: versions, CURRENT, manifests, integrity check, clear not-found messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.exceptions import ModelInputError, ModelIntegrityError, ModelNotFoundError
from models.registry import ModelRegistry, parse_ref


def _tiny_model(path: Path, scale: float) -> Path:
    """y = x * scale, x float32 [N, 2]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [scale])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "tiny", [x], [y], [s])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_register_load_and_promote(registry: ModelRegistry, tmp_path: Path) -> None:
    v1 = registry.register("tiny", _tiny_model(tmp_path / "a.onnx", 2.0), {"metrics": {"m": 1.0}, "seed": 7})
    v2 = registry.register("tiny", _tiny_model(tmp_path / "b.onnx", 3.0), {"metrics": {"m": 2.0}})
    assert (v1, v2) == (1, 2)
    assert registry.current("tiny") == 1  # first registration becomes current, later ones do not
    x = np.ones((3, 2), dtype=np.float32)
    handle = registry.load("tiny")
    assert handle.ref == "tiny@1" and handle.version == 1 and handle.name == "tiny"
    np.testing.assert_allclose(handle.run({"x": x})["y"], 2.0 * x)
    registry.promote("tiny", 2)
    assert registry.load("tiny").ref == "tiny@2"
    assert registry.load_ref("tiny@1").run({"x": x})["y"][0, 0] == 2.0
    manifest = registry.manifest("tiny", 1)
    assert manifest["opset"] == 17 and manifest["seed"] == 7 and manifest["quantized"] is False
    assert manifest["inputs"] == [{"name": "x", "shape": ["N", 2], "dtype": "float32"}]
    assert manifest["outputs"][0]["name"] == "y"
    assert handle.input_names == ("x",) and handle.output_names == ("y",)
    assert [(m.name, m.versions, m.current) for m in registry.list()] == [("tiny", (1, 2), 2)]


def test_tampered_model_is_refused_before_any_session(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("tiny", _tiny_model(tmp_path / "a.onnx", 2.0), {})
    model_file = registry.root / "tiny" / "1" / "model.onnx"
    _tiny_model(model_file, 5.0)  # a valid model, but not the registered one
    with pytest.raises(ModelIntegrityError) as info:
        registry.load("tiny")
    message = str(info.value)
    expected = registry.manifest("tiny", 1)["sha256"]
    assert expected in message and str(model_file) in message and "tiny@1" in message
    with pytest.raises(ModelIntegrityError):
        registry.promote("tiny", 1)


def test_missing_model_and_version_messages_list_what_exists(registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="empty"):
        registry.load("risk")
    registry.register("tiny", _tiny_model(tmp_path / "a.onnx", 2.0), {})
    with pytest.raises(ModelNotFoundError, match=r"tiny \(versions \[1\], current 1\)"):
        registry.load("risk")
    with pytest.raises(ModelNotFoundError, match=r"tiny@4 not found; 'tiny' has versions \[1\]"):
        registry.load("tiny", 4)
    with pytest.raises(ModelNotFoundError):
        registry.promote("tiny", 9)


def test_run_rejects_wrong_input_names(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("tiny", _tiny_model(tmp_path / "a.onnx", 2.0), {})
    with pytest.raises(ModelInputError, match=r"missing \['x'\], unexpected \['z'\]"):
        registry.load("tiny").run({"z": np.ones((1, 2), dtype=np.float32)})


def test_env_root_and_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_MODEL_REGISTRY", str(tmp_path / "elsewhere"))
    assert ModelRegistry().root == tmp_path / "elsewhere"
    assert parse_ref("risk@2") == ("risk", 2)
    assert parse_ref("risk") == ("risk", None)
    with pytest.raises(ValueError, match="VERSION"):
        parse_ref("risk@x")


def test_manifest_is_json_with_sorted_keys(registry: ModelRegistry, tmp_path: Path) -> None:
    registry.register("tiny", _tiny_model(tmp_path / "a.onnx", 2.0), {"feature_names": ["a", "b"]})
    raw = (registry.root / "tiny" / "1" / "manifest.json").read_text()
    assert list(json.loads(raw)) == sorted(json.loads(raw))
    assert (registry.root / "tiny" / "CURRENT").read_text().strip() == "1"
