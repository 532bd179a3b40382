"""The reco step without its seen-item mask: the registered step graph, rewired in memory to rank the whole catalogue.

A registered step model (`models.training.reco`) masks the session's seen items inside the graph: the `seen`
input ([N, catalog] floats) is compared with 0.5, or-ed with the clicked item's one-hot, and a `Where` writes -inf
into those scores before `TopK`. At a batch of 500 clicks that mask is ~45 % of the model's time (onnxruntime's
profile on 2 cores, 2026-12-07: Where 31 %, GreaterOrEqual 7 %, Equal 5 %, Or 3 %), and its input is 10 MB to
zero and fill in Python. The operator drops seen items from the model's answer anyway (`RecoOperator._top_k`),
so in-process it can run the same weights without the mask and ask `TopK` for `k + |excluded|` items: the first
`k` that are not excluded are exactly the `k` the masked graph ranks first, with the same scores (`TopK` orders
equal scores by the lower index in both graphs).

`ranked_step(handle)` reads the model file, checks its sha256 against the manifest again (as `ModelHandle`
does before it runs a file), and rewrites the graph in memory: `TopK` reads the scores the `Where` masked, its `K`
becomes the int64 input `top_n` of shape [1], and the nodes and inputs left unused (the mask, `seen`) are removed.
The registry's file is never changed: the model's identity, sha256 and results stay what they are. A graph of
another shape is not rewritten (None): it is served as registered. Remote backends serve the registered file.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from models.exceptions import ModelIntegrityError
from models.handle import ModelHandle, session_options

if TYPE_CHECKING:
    import onnx

#: The rewritten graph's input giving TopK's K (int64, shape [1]); it replaces the `seen` mask.
TOP_N = "top_n"


def _ranked_graph(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """`model` with TopK ranking the unmasked scores for `top_n` items, or None when it is not a masked step."""
    import onnx  # here, not at module level: imported while PyFlink's per-record operator loads the job's
    from onnx import TensorProto, helper, numpy_helper  # functions, onnx made its JVM exit (2026-12-07)

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    topks = [node for node in graph.node if node.op_type == "TopK"]
    if len(topks) != 1 or {i.name for i in graph.input} != {"item", "hidden", "seen"}:
        return None
    where = producers.get(topks[0].input[0])
    if where is None or where.op_type != "Where" or len(where.input) != 3:
        return None
    constants = {init.name: init for init in graph.initializer}
    fill = constants.get(where.input[1])
    if fill is None or list(numpy_helper.to_array(fill).reshape(-1)) != [float("-inf")]:
        return None  # not a mask writing -inf
    topks[0].input[0] = where.input[2]  # the scores before the mask
    topks[0].input[1] = TOP_N
    needed = {out.name for out in graph.output}
    kept: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):  # nodes in topological order: walk back from the outputs
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    if "seen" in needed:  # something other than the mask reads `seen`
        return None
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inputs = [i for i in graph.input if i.name != "seen"]
    del graph.input[:]
    graph.input.extend([*inputs, helper.make_tensor_value_info(TOP_N, TensorProto.INT64, [1])])
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    for output in graph.output:  # [N, K] -> [N, top_n]: the second dimension is now the caller's
        if output.name in topks[0].output:
            output.type.tensor_type.shape.dim[1].dim_param = TOP_N
    onnx.checker.check_model(model)
    return model


class RankedStep:
    """The rewired step graph of one model version in its own onnxruntime session: `run` steps a batch."""

    def __init__(self, handle: ModelHandle, graph: onnx.ModelProto) -> None:
        self.ref = handle.ref
        self._session = ort.InferenceSession(graph.SerializeToString(), sess_options=session_options(),
                                             providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, items: np.ndarray, hidden: np.ndarray, top_n: int) -> dict[str, np.ndarray]:
        """Step `items` [N] from `hidden` [N, H]: `new_hidden` [N, H], and the `top_n` best items of the whole
        catalogue per row with their scores (`top_items`, `top_scores` [N, top_n], best first)."""
        feeds = {"item": items, "hidden": hidden, TOP_N: np.array([top_n], dtype=np.int64)}
        return dict(zip(self._outputs, self._session.run(self._outputs, feeds), strict=True))


def ranked_step(handle: ModelHandle) -> RankedStep | None:
    """`handle`'s step graph without the seen mask (see the module docstring), or None when the graph is not a
    masked step model. Raises `ModelIntegrityError` if the file changed since it was registered."""
    data = handle.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != handle.sha256:
        raise ModelIntegrityError(f"loading model {handle.ref}: {handle.path} no longer matches its manifest's sha256")
    import onnx

    ranked = _ranked_graph(onnx.load_from_string(data))
    return None if ranked is None else RankedStep(handle, ranked)
