"""`ModelHandle.bind`: the operators' per-event model call on preallocated arrays gives what `run` gives."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import ModelInputError
from models.registry import ModelRegistry


def test_a_bound_risk_model_scores_like_run_and_reads_the_input_in_place() -> None:
    model = ModelRegistry().load_ref("risk@1")
    features = np.zeros((1, 12), dtype=np.float32)
    bound = model.bind({"features": features}, ["probability"])
    assert bound.fast, "onnxruntime no longer exposes the C session/binding: BoundModel fell back to the slow path"
    rng = np.random.default_rng(3)
    for _ in range(20):
        features[0] = rng.normal(size=12).astype(np.float32)
        bound.run()
        expected = model.run({"features": features.copy()})["probability"]
        assert bound.outputs["probability"].tobytes() == expected.tobytes()


def test_a_bound_reco_model_gives_every_output_like_run() -> None:
    model = ModelRegistry().load_ref("reco@1")
    inputs = {
        "item": np.array([7], dtype=np.int64),
        "hidden": np.random.default_rng(1).normal(size=(1, 64)).astype(np.float32),
        "seen": np.zeros((1, 5000), dtype=np.float32),
    }
    inputs["seen"][0, [7, 11, 4000]] = 1.0
    bound = model.bind(inputs, list(model.output_names))
    bound.run()
    expected = model.run({name: array.copy() for name, array in inputs.items()})
    for name in model.output_names:
        assert bound.outputs[name].dtype == expected[name].dtype
        assert bound.outputs[name].tobytes() == expected[name].tobytes()


def test_binding_refuses_what_does_not_fit_the_model() -> None:
    model = ModelRegistry().load_ref("risk@1")
    with pytest.raises(ModelInputError, match="inputs"):
        model.bind({"x": np.zeros((1, 12), np.float32)}, ["probability"])
    with pytest.raises(ModelInputError, match="outputs"):
        model.bind({"features": np.zeros((1, 12), np.float32)}, ["logits"])
    with pytest.raises(ModelInputError, match="float64"):
        model.bind({"features": np.zeros((1, 12), np.float64)}, ["probability"])
    with pytest.raises(ModelInputError, match="shape"):
        model.bind({"features": np.zeros((1, 11), np.float32)}, ["probability"])
    with pytest.raises(ModelInputError, match="C-contiguous"):
        model.bind({"features": np.zeros((12, 2), np.float32).T}, ["probability"])
