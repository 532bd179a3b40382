"""The model server: registry models over the Open Inference Protocol v2 (HTTP and gRPC), in its own venv.

Why MLServer (1.7) and not KServe's `ModelServer`: both speak v2 over HTTP and gRPC, but MLServer takes a custom
runtime as a plain class named in a settings file (`models.serving.mlserver_runtime.RegistryOnnxRuntime`,
which loads through `ModelRegistry.load`, sha256 first), serves several models and versions from one folder,
reports per-model metadata parameters (our name/version/sha256) over both protocols, and runs its inference in
the server process (`parallel_workers: 0`: no worker pool to start). KServe's server was not measured side by side.
Measured on the shared 2-core machine (2026-12-06): ready in 2.0-3.6 s from process start (19 s once under heavy
load from other jobs); through the risk operator, one-row batches take ~1.4-2.2 ms p50 per request over HTTP or
gRPC (vs ~0.04 ms in-process), 500-row batches ~28-33 ms p50 vs ~22 ms in-process
(`benchmarks/remote_bench.py`, `benchmarks/results/remote_bench.json`).

MLServer needs protobuf 6 while apache-beam (PyFlink) pins the job's venv below 6, so the server runs from its
own venv, `.venv-serve` at the project root (`make serve-venv`; `make test` depends on it), with the project on
PYTHONPATH (the runtime imports only `models.registry`/`models.handle`, numpy and onnxruntime from it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from models.registry import ModelRegistry, parse_ref
from pipelines.exceptions import SetupError
from pipelines.infra.python_env import PROJECT_ROOT

#: The model server's virtualenv (created by `make serve-venv`).
SERVE_VENV = Path(os.environ.get("STREAMSCORE_SERVE_VENV") or PROJECT_ROOT / ".venv-serve")
RUNTIME_CLASS = "models.serving.mlserver_runtime.RegistryOnnxRuntime"


class ModelServerError(SetupError):
    """The model server could not be set up or did not become ready (the message says why and what to do)."""


def mlserver_executable() -> Path:
    """The `mlserver` command of the serve venv (`ModelServerError` naming the make target when missing)."""
    exe = SERVE_VENV / "bin" / "mlserver"
    if not exe.is_file():
        raise ModelServerError(
            f"starting the model server: {exe} does not exist; create the server's venv with `make serve-venv`"
        )
    return exe


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_model_repository(folder: Path, registry: ModelRegistry, refs: Sequence[str], http_port: int,
                           grpc_port: int) -> list[str]:
    """Write MLServer's settings and one model folder per `refs` entry (`name` or `name@version`) into `folder`;
    returns the served references as `name@version`. Every model is verified (sha256) here first, so a broken
    registry fails before the server starts."""
    settings = {
        "http_port": http_port,
        "grpc_port": grpc_port,
        "host": "127.0.0.1",
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "load_models_at_startup": True,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    served = []
    for ref in refs:
        name, version = parse_ref(ref)
        handle = registry.load(name, version)
        model_dir = folder / f"{handle.name}-{handle.version}"
        model_dir.mkdir()
        model_settings = {
            "name": handle.name,
            "implementation": RUNTIME_CLASS,
            "parameters": {
                "version": str(handle.version),
                "extra": {"registry": str(registry.root), "ref": handle.ref},
            },
        }
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        served.append(handle.ref)
    return served


class ModelServer:
    """A running MLServer process serving registry models: `start()`, `wait_ready()`, `stop()`/`kill()`.

    `http_port`/`grpc_port` default to free ports. The process's output goes to `log_path`. The server's files
    (its model repository, and its log unless `log_path` is given) live in a temporary folder that `stop()`
    removes, unless the server had exited with an error of its own (then its log stays for the post-mortem).
    """

    def __init__(self, refs: Sequence[str], registry: ModelRegistry | None = None, *, http_port: int | None = None,
                 grpc_port: int | None = None, log_path: Path | None = None) -> None:
        self.registry = registry or ModelRegistry()
        self.refs = list(refs) or [m.name for m in self.registry.list() if m.current is not None]
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self._folder = Path(tempfile.mkdtemp(prefix="streamscore-serve-"))
        self.log_path = log_path or self._folder / "server.log"
        self.served: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """The v2 HTTP base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """The v2 gRPC target (`host:port`)."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> ModelServer:
        """Write the model repository and start the server process (does not wait: see `wait_ready`)."""
        exe = mlserver_executable()
        self._folder.mkdir(exist_ok=True)  # again after a stop() removed it
        repo = self._folder / "repository"
        if not repo.exists():
            repo.mkdir()
            self.served = write_model_repository(repo, self.registry, self.refs, self.http_port, self.grpc_port)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(exe), "start", str(repo)], stdout=log, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until every served model answers ready over HTTP; returns the seconds waited.
        `ModelServerError` (with the log's tail) if the process exits or the timeout passes first."""
        started = time.monotonic()
        urls = [f"{self.http_url}/v2/models/{n}/versions/{v}/ready" for n, v in map(parse_ref, self.served)]
        while time.monotonic() - started < timeout:
            if self.process is None or self.process.poll() is not None:
                raise ModelServerError(f"the model server exited before it was ready; its log:\n{self.log_tail()}")
            if all(_answers(url) for url in urls):
                return time.monotonic() - started
            time.sleep(0.1)
        raise ModelServerError(f"the model server was not ready after {timeout:.0f} s; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` of the server's log."""
        if not self.log_path.is_file():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown: what a crash looks like to its clients)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout` seconds) and remove its files (see the class)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        failed = self.process is not None and (self.process.returncode or 0) > 0
        if not failed:
            shutil.rmtree(self._folder, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
