"""Open Inference Protocol v2 clients: `HttpOipClient` (JSON over HTTP/1.1, keep-alive) and `GrpcOipClient`.

Both offer `metadata(name, version, timeout)` -> `ModelMetadata` and `infer(name, version, inputs, timeout)` ->
outputs by name (numpy arrays). Tensors travel in v2's typed form (JSON `data`, gRPC `*_contents`); float32
values are sent and read back exactly (a float32 is a double exactly; the server casts FP32 back). Errors raise
`RemoteCallError`. Clients are safe to use from several threads (one HTTP connection per thread; a gRPC channel
is thread-safe).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from operators.remote.exceptions import RemoteCallError

#: numpy dtype -> v2 datatype (and back).
V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}
_NUMPY_OF = {v: np.dtype(k) for k, v in V2_DATATYPES.items()}
_GRPC_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
                  "INT32": "int_contents", "BOOL": "bool_contents"}


@dataclass(frozen=True)
class ModelMetadata:
    """What a server reports about one model (v2 model metadata): name, versions and its `parameters`."""

    name: str
    versions: tuple[str, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


class OipClient(Protocol):
    """A v2 inference client (HTTP or gRPC)."""

    def metadata(self, name: str, version: int, timeout: float) -> ModelMetadata:
        """The server's metadata of `name` version `version`."""
        ...

    def infer(self, name: str, version: int, inputs: Mapping[str, np.ndarray], timeout: float) -> dict[str, np.ndarray]:
        """Run `name` version `version` on `inputs`; every output by name."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _datatype(array: np.ndarray) -> str:
    try:
        return V2_DATATYPES[array.dtype.name]
    except KeyError:
        raise RemoteCallError(
            f"tensor dtype {array.dtype} has no v2 datatype; supported: {list(V2_DATATYPES)}"
        ) from None


class HttpOipClient:
    """v2 over HTTP/1.1 with JSON bodies; `url` is the server's base URL (`http://host:port`)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url: expected http://HOST:PORT, got {url!r}")
        self.url = url
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._local = threading.local()

    def _request(self, method: str, path: str, body: bytes | None, timeout: float) -> Any:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            raise RemoteCallError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status != 200:
            raise RemoteCallError(f"{method} {self.url}{path}: HTTP {response.status}: {payload[:300]!r}")
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise RemoteCallError(f"{method} {self.url}{path}: the answer is not JSON ({exc})") from exc

    def metadata(self, name: str, version: int, timeout: float) -> ModelMetadata:
        """The server's metadata of `name` version `version`."""
        answer = self._request("GET", f"/v2/models/{name}/versions/{version}", None, timeout)
        return ModelMetadata(str(answer.get("name")), tuple(answer.get("versions") or ()),
                             dict(answer.get("parameters") or {}))

    def infer(self, name: str, version: int, inputs: Mapping[str, np.ndarray], timeout: float) -> dict[str, np.ndarray]:
        """Run `name` version `version` on `inputs`; every output by name."""
        body = json.dumps({"inputs": [
            {"name": n, "datatype": _datatype(a), "shape": list(a.shape), "data": a.reshape(-1).tolist()}
            for n, a in inputs.items()
        ]}).encode()
        answer = self._request("POST", f"/v2/models/{name}/versions/{version}/infer", body, timeout)
        try:
            return {
                o["name"]: np.asarray(o["data"], dtype=_NUMPY_OF[o["datatype"]]).reshape(o["shape"])
                for o in answer["outputs"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteCallError(f"POST {self.url} infer {name}@{version}: malformed outputs ({exc})") from exc

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class GrpcOipClient:
    """v2 over gRPC (`inference.GRPCInferenceService`); `target` is `host:port`.

    A call failing with UNAVAILABLE replaces the channel, so the next call (the breaker's probe) connects afresh:
    a channel whose server was killed stays in gRPC's reconnect backoff and failed the probes for ~2.5 s after
    the restarted server was ready even with a 1 s maximum backoff (seen under the Flink job's restart test and
    in a plain process alike), so the batches kept falling back after the server was back.
    """

    def __init__(self, target: str) -> None:
        import grpc

        from operators.remote.oip_grpc import messages

        self.target = target
        self._grpc = grpc
        self._m = messages()
        self._lock = threading.Lock()
        self._connect()

    def _connect(self) -> None:
        self._channel = self._grpc.insecure_channel(self.target)
        service = "/inference.GRPCInferenceService/"
        self._metadata = self._channel.unary_unary(
            service + "ModelMetadata", request_serializer=self._m.ModelMetadataRequest.SerializeToString,
            response_deserializer=self._m.ModelMetadataResponse.FromString)
        self._infer = self._channel.unary_unary(
            service + "ModelInfer", request_serializer=self._m.ModelInferRequest.SerializeToString,
            response_deserializer=self._m.ModelInferResponse.FromString)

    def _call(self, method: str, request: Any, timeout: float, what: str) -> Any:
        channel = self._channel
        try:
            return getattr(self, method)(request, timeout=timeout)
        except self._grpc.RpcError as exc:
            if exc.code() == self._grpc.StatusCode.UNAVAILABLE:
                with self._lock:
                    if self._channel is channel:  # once per failed channel, whatever the threads that saw it
                        self._connect()
                        channel.close()
            raise RemoteCallError(f"gRPC {self.target} {what}: {exc.code().name}: {exc.details()}") from exc

    def metadata(self, name: str, version: int, timeout: float) -> ModelMetadata:
        """The server's metadata of `name` version `version`."""
        request = self._m.ModelMetadataRequest(name=name, version=str(version))
        answer = self._call("_metadata", request, timeout, f"metadata {name}@{version}")
        parameters = {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in answer.parameters.items()
                      if v.WhichOneof("parameter_choice")}
        return ModelMetadata(answer.name, tuple(answer.versions), parameters)

    def infer(self, name: str, version: int, inputs: Mapping[str, np.ndarray], timeout: float) -> dict[str, np.ndarray]:
        """Run `name` version `version` on `inputs`; every output by name."""
        request = self._m.ModelInferRequest(model_name=name, model_version=str(version))
        for input_name, array in inputs.items():  # raw little-endian bytes: no Python list of every element
            request.inputs.add(name=input_name, datatype=_datatype(array), shape=list(array.shape))
            request.raw_input_contents.append(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
                                              .tobytes())
        answer = self._call("_infer", request, timeout, f"infer {name}@{version}")
        outputs: dict[str, np.ndarray] = {}
        for index, tensor in enumerate(answer.outputs):
            dtype = _NUMPY_OF.get(tensor.datatype)
            if dtype is None:
                raise RemoteCallError(f"gRPC {self.target} infer {name}@{version}: unknown datatype {tensor.datatype}")
            if len(answer.raw_output_contents) > index:
                values = np.frombuffer(answer.raw_output_contents[index], dtype=dtype)
            else:
                values = np.asarray(getattr(tensor.contents, _GRPC_CONTENTS[tensor.datatype]), dtype=dtype)
            outputs[tensor.name] = values.reshape(list(tensor.shape))
        return outputs

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()
