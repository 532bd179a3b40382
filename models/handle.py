"""`ModelHandle`: one registered, integrity-checked ONNX model version behind an onnxruntime session.

The runtime side of the registry: it needs onnxruntime and numpy only (no torch). The model file's sha256
is compared with the manifest *before* an `InferenceSession` is created, so a tampered or truncated file
is never executed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
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

    def bind(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> BoundModel:
        """A `BoundModel` running this model on the caller's fixed input arrays into preallocated output arrays.

        `inputs` holds one C-contiguous array per model input (dtype and fixed dimensions as declared); the
        `outputs` named are allocated with the inputs' batch size as their first dimension, and only they are
        computed. One trial run on the inputs' current contents checks that the outputs come out in those
        shapes. Raises `ModelInputError` when something does not fit (the message says what). Create it where
        sessions are created: it calls into onnxruntime.
        """
        problems = []
        if set(inputs) != self._input_set:
            problems.append(f"inputs {sorted(inputs)}, expected {sorted(self._input_set)}")
        unknown = sorted(set(outputs) - set(self.output_names))
        if unknown or not outputs:
            problems.append(f"outputs {list(outputs)}, expected some of {list(self.output_names)}")
        if problems:
            raise ModelInputError(f"binding {self.ref}: " + "; ".join(problems))
        batch = None
        for meta in self._session.get_inputs():
            array = inputs[meta.name]
            problems += _misfits(meta.name, array, meta.shape, meta.type)
            batch = array.shape[0] if array.ndim and batch is None else batch
        arrays: dict[str, np.ndarray] = {}
        for meta in self._session.get_outputs():
            if meta.name not in outputs:
                continue
            shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(meta.shape)]
            dims = [d for d in shape if isinstance(d, int)]
            dtype = _NUMPY_TYPES.get(meta.type)
            if dtype is None or len(dims) != len(shape):
                problems.append(f"output `{meta.name}` ({meta.type} {meta.shape}) cannot be preallocated")
                continue
            arrays[meta.name] = np.zeros(dims, dtype=dtype)
        if problems:
            raise ModelInputError(f"binding {self.ref}: " + "; ".join(problems))
        bound = BoundModel(self, self._session, inputs, arrays)
        try:
            expected = self._session.run(list(arrays), dict(inputs))
            bound.run()
        except Exception as exc:  # onnxruntime's errors are plain Exceptions: reported as a binding problem
            raise ModelInputError(f"binding {self.ref}: the trial run failed: {type(exc).__name__}: {exc}") from exc
        for (name, array), value in zip(arrays.items(), expected, strict=True):
            if value.shape != array.shape or value.dtype != array.dtype:
                raise ModelInputError(
                    f"binding {self.ref}: output `{name}` came out as {value.dtype} {list(value.shape)}, "
                    f"not {array.dtype} {list(array.shape)}"
                )
        return bound

    def __repr__(self) -> str:
        return f"ModelHandle({self.ref}, sha256={self.sha256[:12]}…, path={self.path})"


_NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(uint8)": np.dtype(np.uint8),
}


def _misfits(name: str, array: np.ndarray, shape: Sequence[Any], onnx_type: str) -> list[str]:
    """Why `array` cannot be bound to the input `name` declared as `onnx_type` of `shape` (empty: it can)."""
    problems = []
    if _NUMPY_TYPES.get(onnx_type) != array.dtype:
        problems.append(f"input `{name}` is {array.dtype}, the model declares {onnx_type}")
    if array.ndim != len(shape) or any(isinstance(d, int) and d != n for d, n in zip(shape, array.shape, strict=False)):
        problems.append(f"input `{name}` has shape {list(array.shape)}, the model declares {list(shape)}")
    if not array.flags.c_contiguous:
        problems.append(f"input `{name}` is not C-contiguous")
    return problems


class BoundModel:
    """One model bound to fixed, preallocated arrays: write the inputs in place, `run()`, read the outputs.

    The per-call cost of `ModelHandle.run` (an input dict, output-name lookups, new output arrays, Python-side
    checks) is paid once here: onnxruntime reads the input arrays and writes the output arrays in place
    (`IOBinding`), so the results are the same as `ModelHandle.run` on the same inputs. The input arrays are the
    caller's, the output arrays this object's; every call shares them: one `BoundModel` serves one thread, one
    call at a time (copy an output that must outlive the next call).
    """

    def __init__(
        self,
        handle: ModelHandle,
        session: ort.InferenceSession,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        self.handle = handle
        #: The bound input arrays by name (write the next call's inputs into them).
        self.inputs: dict[str, np.ndarray] = dict(inputs)
        #: The bound output arrays by name (allocated by `ModelHandle.bind`; each call overwrites them).
        self.outputs: dict[str, np.ndarray] = dict(outputs)
        binding = session.io_binding()
        for name, array in self.inputs.items():
            binding.bind_cpu_input(name, array)
        for name, array in self.outputs.items():
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
        self._binding = binding
        self._session = session
        self._run_options = ort.RunOptions()
        # The C session and binding behind onnxruntime's Python wrappers: calling them directly skips ~2 µs of
        # per-call Python checks (graph-capture options) that never apply to a CPU session. `fast` tells
        # whether this onnxruntime still has them (a unit test asserts it does).
        self._c_session: Any = getattr(session, "_sess", None)
        self._c_binding: Any = getattr(binding, "_iobinding", None)
        self.fast = self._c_session is not None and self._c_binding is not None

    def run(self) -> None:
        """Run the model on the current contents of the input arrays; the outputs are written in place."""
        if self.fast:
            self._c_session.run_with_iobinding(self._c_binding, self._run_options)
        else:
            self._session.run_with_iobinding(self._binding, self._run_options)

    def __repr__(self) -> str:
        return f"BoundModel({self.handle.ref}, inputs={list(self.inputs)}, outputs={list(self.outputs)})"
