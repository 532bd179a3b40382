"""`RegistryOnnxRuntime`: an MLServer runtime that serves one registry model version (ONNX) over v2 HTTP/gRPC.

It runs inside the model server's own virtualenv (`pipelines.infra.serve_venv`): MLServer needs protobuf 6,
the job's venv is pinned below 6 by apache-beam. It imports only MLServer, numpy, onnxruntime and
`models.registry` / `models.handle` (no torch, nothing of the job).

The model settings' `parameters.extra` carry `registry` (the registry folder) and `ref` (`name@version`);
`load` goes through `ModelRegistry.load`, so the file's sha256 is checked against the manifest before an
onnxruntime session is created. The v2 model metadata reports the registry identity in its parameters:
`registry_name`, `registry_version` and `sha256` (what a job checks before it routes events here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    ResponseOutput,
)

from models.handle import ModelHandle
from models.registry import ModelRegistry, parse_ref

_V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}


class RegistryOnnxRuntime(MLModel):
    """One registry model version behind MLServer: sha256-verified at load, scored with onnxruntime."""

    _handle: ModelHandle

    async def load(self) -> bool:
        """Load the model named by the settings' `parameters.extra` (`registry`, `ref`), verifying its sha256."""
        extra: dict[str, Any] = dict(self.settings.parameters.extra or {})
        name, version = parse_ref(str(extra["ref"]))
        self._handle = ModelRegistry(extra["registry"]).load(name, version)
        return True

    async def metadata(self) -> MetadataModelResponse:
        """The v2 model metadata, with the registry's name, version and sha256 in `parameters`."""
        handle = self._handle
        manifest = handle.manifest

        def tensors(kind: str) -> list[MetadataTensor]:
            return [
                MetadataTensor(
                    name=t["name"],
                    datatype=_V2_DATATYPES.get(str(t["dtype"]), str(t["dtype"]).upper()),
                    shape=[-1 if not isinstance(d, int) else d for d in t["shape"]],
                )
                for t in manifest[kind]
            ]

        return MetadataModelResponse(
            name=self.name,
            versions=[str(handle.version)],
            platform="onnxruntime",
            inputs=tensors("inputs"),
            outputs=tensors("outputs"),
            parameters=Parameters(
                registry_name=handle.name, registry_version=handle.version, sha256=handle.sha256
            ),
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the model on the request's tensors (by name); every model output comes back."""
        feeds = {}
        for request_input in payload.inputs:
            feeds[request_input.name] = np.ascontiguousarray(NumpyCodec.decode_input(request_input))
        outputs = self._handle.run(feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=str(self._handle.version),
            id=payload.id,
            outputs=[_output(name, value) for name, value in outputs.items()],
        )


def _output(name: str, value: np.ndarray) -> ResponseOutput:
    output: ResponseOutput = NumpyCodec.encode_output(name, value)
    return output
