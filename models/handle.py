"""`ModelHandle`: one registered, integrity-checked ONNX model version behind an onnxruntime session.

The runtime side of the registry: it needs onnxruntime and numpy only (no torch). The model file's sha256
is compared with the manifest *before* an `InferenceSession` is created, so a tampered or truncated file
is never executed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.exceptions import ModelInputError, ModelIntegrityError

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The hex sha256 digest of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    """The onnxruntime session options used for scoring (one thread each by default, sequential execution)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class ModelHandle:
    """A loaded model version: identity (`name`, `version`, `ref`, `sha256`), its manifest, and `run`.

    Raises `ModelIntegrityError` at construction when the file's sha256 differs from `manifest["sha256"]`.
    Sessions use one intra-op and one inter-op thread unless told otherwise.
    """

    def __init__(
        self,
        model_path: Path,
        manifest: Mapping[str, Any],
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        self.path = Path(model_path)
        self.manifest: dict[str, Any] = dict(manifest)
        self.name: str = str(self.manifest["name"])
        self.version: int = int(self.manifest["version"])
        self.ref: str = f"{self.name}@{self.version}"
        self.sha256: str = str(self.manifest["sha256"])
        actual = file_sha256(self.path)
        if actual != self.sha256:
            raise ModelIntegrityError(
                f"loading model {self.ref}: sha256 of {self.path} is {actual}, but its manifest expects "
                f"{self.sha256}. The file was modified or corrupted after registration; refusing to run it. "
                f"Restore the file (e.g. `git checkout -- {self.path}`) or register the new file as a new "
                "version with `streamscore models train`/`ModelRegistry.register`."
            )
        self._session = ort.InferenceSession(
            str(self.path),
            sess_options=session_options(intra_op_threads, inter_op_threads),
            providers=["CPUExecutionProvider"],
        )
        self.input_names: tuple[str, ...] = tuple(i.name for i in self._session.get_inputs())
        self.output_names: tuple[str, ...] = tuple(o.name for o in self._session.get_outputs())
        self._input_set = frozenset(self.input_names)
        self._output_list = list(self.output_names)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on a batch; returns every output by name.

        Raises `ModelInputError` when the input names differ from `input_names`.
        """
        if inputs.keys() != self._input_set:
            missing = sorted(self._input_set - inputs.keys())
            extra = sorted(set(inputs) - self._input_set)
            raise ModelInputError(
                f"running {self.ref}: expected inputs {list(self.input_names)}; "
                f"missing {missing}, unexpected {extra}"
            )
        feeds = inputs if isinstance(inputs, dict) else dict(inputs)
        outputs = self._session.run(self._output_list, feeds)
        return dict(zip(self.output_names, outputs, strict=True))

    def __repr__(self) -> str:
        return f"ModelHandle({self.ref}, sha256={self.sha256[:12]}…, path={self.path})"
