"""The toy pipeline's model: whether a user is a regular, from how many events they have sent. An ONNX graph
built without torch, `probability = sigmoid(SLOPE * (count - threshold))`: `count` float32 [N, 1] in,
`probability` float32 [N, 1] out. "Training" picks the threshold that classifies the training rows best."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import ModelRegistry

NAME = "counter"
SLOPE = 4.0
#: What makes a user a regular, in the synthetic ground truth (`tests.toy_pipeline.loop.regular_labels`).
REGULAR_FROM = 20


def export(path: Path, threshold: float) -> Path:
    """Write the model with `threshold` (a count at or above it scores above 0.5) to `path`."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sub", ["count", "threshold"], ["centred"]),
         helper.make_node("Mul", ["centred", "slope"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["probability"])],
        "counter",
        [helper.make_tensor_value_info("count", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor("threshold", TensorProto.FLOAT, [], [threshold - 0.5]),
         helper.make_tensor("slope", TensorProto.FLOAT, [], [SLOPE])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def register(registry: ModelRegistry, threshold: int, fields: dict[str, Any] | None = None, *,
             promote: bool | None = None) -> int:
    """Register the model with `threshold` as the next version of `counter`; its version."""
    with tempfile.TemporaryDirectory() as tmp:
        return registry.register(NAME, export(Path(tmp) / "counter.onnx", threshold),
                                 {"threshold": threshold, **(fields or {})}, promote=promote)


def fit_threshold(counts: np.ndarray, labels: np.ndarray) -> int:
    """The threshold (a count) that classifies `labels` best from `counts` (the smallest of the best)."""
    candidates = np.arange(1, int(counts.max(initial=1)) + 2)
    accuracy = [float(np.mean((counts >= c) == (labels == 1))) for c in candidates]
    return int(candidates[int(np.argmax(accuracy))])


def accuracy(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """The share of labels the probabilities get right at 0.5 (the loop's metric)."""
    return {"accuracy": round(float(np.mean((probability >= 0.5) == (labels == 1))), 5)}


def registry_with_counter(root: Path, threshold: int = REGULAR_FROM) -> Path:
    """A copy of the committed model registry at `root`, with `counter@1` (of `threshold`) registered and
    current: point `STREAMSCORE_MODEL_REGISTRY` at it so every process of a test finds the toy's model."""
    import shutil

    from models.registry import DEFAULT_ROOT

    shutil.copytree(DEFAULT_ROOT, root)
    register(ModelRegistry(root), threshold)
    return root
