"""INT8 dynamic quantisation of registered models (onnxruntime.quantization; build time, not serving time).

Weights of MatMul/Gemm (and Gather, i.e. embeddings) become int8; activations are quantised on the fly per
batch. The result is registered as a new version of the same name with `quantized: true` and
`quantized_from: <version>`; it does not become current unless promoted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from models.registry import ModelRegistry

# Manifest fields that describe the training/run, not the file; they are copied from the FP32 source.
_NOT_COPIED = (
    "name",
    "version",
    "sha256",
    "created",
    "opset",
    "inputs",
    "outputs",
    "metrics",
    "metrics_holdout",
)


def quantize_file(source: Path, target: Path) -> Path:
    """Write the INT8 dynamic-quantised version of the ONNX file `source` to `target`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=False)
    return target


def quantize_registered(
    registry: ModelRegistry, name: str, version: int | None = None, *, extra: dict[str, Any] | None = None
) -> int:
    """Quantise `name@version` (current when None) and register it as a new, non-current version."""
    manifest = registry.manifest(name, version)
    source = registry.model_path(name, manifest["version"])
    fields = {k: v for k, v in manifest.items() if k not in _NOT_COPIED}
    fields |= {
        "quantized": True,
        "quantized_from": manifest["version"],
        "quantization": "dynamic int8 (QInt8)",
    }
    fields |= extra or {}
    with tempfile.TemporaryDirectory() as tmp:
        target = quantize_file(source, Path(tmp) / "model.int8.onnx")
        return registry.register(name, target, fields, promote=False)
