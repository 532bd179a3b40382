"""A real standalone Flink session cluster on this machine, from the distribution the apache-flink package ships.

`up(spec)` writes the cluster's own configuration folder under `$STREAMSCORE_HOME/cluster/` and starts one
JobManager and `spec.taskmanagers` TaskManager JVMs with PyFlink's own `bin/jobmanager.sh` and `bin/taskmanager.sh`
(so the lib/, opt/ and plugins/ folders are Flink's: the Prometheus reporter is its `metrics-prometheus` plugin).
The configuration is the one streamscore jobs need on a cluster: RocksDB incremental checkpoints retained on
cancellation under `cluster/checkpoints`, savepoints under `cluster/savepoints`, an exponential-delay restart
strategy, PyFlink thread mode with this venv's interpreter, and a Prometheus endpoint per JVM (the first free
port of `spec.prometheus_ports`). Logs and pid files go to `cluster/log` and `cluster/pid`.

`status()` asks the JobManager's REST API (`/overview`, `/taskmanagers`) and finds the Prometheus endpoints by
scraping the port range; `down()` stops the TaskManagers and the JobManager (`stop-all`), then kills what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.exceptions import SetupError
from pipelines.infra.home import subdir
from pipelines.infra.jvm_temp import without_job_temp_dir
from pipelines.infra.python_env import flink_python_environment

#: Key groups of every job (`pipeline.max-parallelism`), fixed up front: a job's keyed state is split into this
#: many groups, a savepoint restores at any parallelism up to it, and it cannot change for the life of the
#: state (a restore with another value fails). 128 is Flink's default for parallelism <= 85, so checkpoints
#: taken before it was set restore unchanged.
MAX_PARALLELISM = 128
#: Prometheus metric families each kind of JVM exports (used to tell the endpoints apart).
JOBMANAGER_METRIC = "flink_jobmanager_numRegisteredTaskManagers"
TASKMANAGER_METRIC = "flink_taskmanager_Status_JVM_CPU_Load"


@dataclass(frozen=True)
class ClusterSpec:
    """The shape of the local session cluster: TaskManagers, slots each, ports and memory per JVM."""

    taskmanagers: int = 2
    slots: int = 2
    rest_port: int = 8081
    rpc_port: int = 6123
    prometheus_ports: tuple[int, int] = (9250, 9269)
    jobmanager_memory: str = "1024m"
    taskmanager_memory: str = "1728m"
    managed_memory: str = "512m"

    def check(self) -> None:
        """`SetupError` for a shape that cannot start (what to change is in the message)."""
        if self.taskmanagers < 1 or self.slots < 1:
            raise SetupError(f"--taskmanagers and --slots must be >= 1, got {self.taskmanagers} and {self.slots}")
        low, high = self.prometheus_ports
        if high - low + 1 < self.taskmanagers + 1:
            raise SetupError(f"the Prometheus port range {low}-{high} has fewer ports than the cluster's "
                             f"{self.taskmanagers + 1} JVMs: widen it with --prometheus-ports")


@dataclass
class ClusterStatus:
    """What `status()` found: the addresses, the TaskManagers registered and every Prometheus endpoint."""

    running: bool
    jobmanager: str
    web_ui: str
    folder: Path
    taskmanagers: int = 0
    slots_total: int = 0
    slots_available: int = 0
    jobs_running: int = 0
    prometheus: dict[str, list[str]] = field(default_factory=lambda: {"jobmanager": [], "taskmanager": []})

    def as_json(self) -> dict[str, Any]:
        """The status as JSON-ready data (`cluster status --json`)."""
        data = asdict(self)
        data["folder"] = str(self.folder)
        return data


def flink_home() -> Path:
    """The Flink distribution inside the installed apache-flink package."""
    import pyflink

    home = Path(pyflink.__file__).resolve().parent
    if not (home / "bin" / "jobmanager.sh").exists():
        raise SetupError(f"{home} has no bin/jobmanager.sh: reinstall apache-flink (`make setup-runtime`)")
    return home


def _lib_folder(name: str, extra: list[Path]) -> Path:
    """A folder of links to the distribution's lib/ jars plus `extra` jars (what `FLINK_LIB_DIR` points at)."""
    folder = subdir(name)
    for stale in folder.iterdir():
        stale.unlink()
    for jar in [*(flink_home() / "lib").glob("*.jar"), *extra]:
        (folder / jar.name).symlink_to(jar)
    return folder


def lib_with_prometheus_reporter() -> Path:
    """A lib folder for an embedded mini-cluster that reports to Prometheus: the distribution's lib/ jars plus
    the metrics-prometheus plugin's jar. (A mini-cluster loads no plugins: its reporters must be on the JVM's
    classpath, which PyFlink builds from `FLINK_LIB_DIR`.)"""
    return _lib_folder("flink-lib-prometheus", sorted((flink_home() / "plugins" / "metrics-prometheus").glob("*.jar")))


def cluster_lib() -> Path:
    """The cluster JVMs' lib folder: the distribution's lib/ plus flink-python from opt/ (as PyFlink's deployment
    docs direct). Loaded once per JVM by the parent class loader, so pemja's native library is loaded once per
    TaskManager: shipped with each job instead, the second Python job on a TaskManager fails to open its
    operators (`NoSuchFieldException: loadedLibraryNames`, pemja reloading its library in a new class loader)."""
    return _lib_folder("cluster-lib", python_jars())


def python_jars() -> list[Path]:
    """The flink-python jar of the distribution (PyFlink's operators and pemja)."""
    return sorted((flink_home() / "opt").glob("flink-python-*.jar"))


def _folder() -> Path:
    return subdir("cluster")


def _spec_path() -> Path:
    return _folder() / "cluster.json"


def saved_spec() -> ClusterSpec:
    """The spec the cluster was last started with (the default one if none was)."""
    path = _spec_path()
    if not path.exists():
        return ClusterSpec()
    data = json.loads(path.read_text())
    data["prometheus_ports"] = tuple(data["prometheus_ports"])
    return ClusterSpec(**data)


def configuration(spec: ClusterSpec, folder: Path) -> dict[str, str]:
    """The cluster's Flink configuration (flat `config.yaml` keys)."""
    low, high = spec.prometheus_ports
    return {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.rpc.port": str(spec.rpc_port),
        "jobmanager.bind-host": "localhost",
        "jobmanager.memory.process.size": spec.jobmanager_memory,
        "taskmanager.bind-host": "localhost",
        "taskmanager.host": "localhost",
        "taskmanager.numberOfTaskSlots": str(spec.slots),
        "taskmanager.memory.process.size": spec.taskmanager_memory,
        "taskmanager.memory.managed.size": spec.managed_memory,
        "rest.address": "localhost",
        "rest.bind-address": "localhost",
        "rest.port": str(spec.rest_port),
        # A lost TaskManager is declared dead after 15 s (default 50 s) so that a job fails over promptly.
        "heartbeat.interval": "3000",
        "heartbeat.timeout": "15000",
        "parallelism.default": "1",
        "pipeline.max-parallelism": str(MAX_PARALLELISM),
        "state.backend.type": "rocksdb",
        "execution.checkpointing.storage": "filesystem",
        "execution.checkpointing.dir": (folder / "checkpoints").as_uri(),
        "execution.checkpointing.savepoint-dir": (folder / "savepoints").as_uri(),
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.num-retained": "3",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        "python.execution-mode": "thread",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "metrics.reporter.prom.factory.class": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
        "metrics.reporter.prom.port": f"{low}-{high}",
    }


def write_conf_dir(conf: Path, values: dict[str, str], writer: str) -> None:
    """A Flink configuration folder: `values` as `config.yaml` plus the distribution's logging files."""
    conf.mkdir(parents=True, exist_ok=True)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties", "logback.xml"):
        source = flink_home() / "conf" / name
        if source.exists():
            shutil.copyfile(source, conf / name)
    lines = [f"{key}: {json.dumps(value)}" for key, value in values.items()]
    (conf / "config.yaml").write_text(f"# written by {writer}\n" + "\n".join(lines) + "\n")


def _write_conf(spec: ClusterSpec, folder: Path) -> Path:
    conf = folder / "conf"
    write_conf_dir(conf, configuration(spec, folder), "`streamscore cluster up`")
    (conf / "workers").write_text("localhost\n" * spec.taskmanagers)
    (conf / "masters").write_text(f"localhost:{spec.rest_port}\n")
    return conf


def _env(folder: Path) -> dict[str, str]:
    env = flink_python_environment()  # this checkout's code: see pipelines.runtimes.flink.job_files
    env.update({
        "FLINK_HOME": str(flink_home()),
        "FLINK_CONF_DIR": str(folder / "conf"),
        "FLINK_LIB_DIR": str(cluster_lib()),
        "FLINK_LOG_DIR": str(subdir("cluster", "log")),
        "FLINK_PID_DIR": str(subdir("cluster", "pid")),
    })
    env["JVM_ARGS"] = without_job_temp_dir(env.get("JVM_ARGS", ""))  # the cluster outlives a job process
    return env


def _script(name: str, *args: str, folder: Path) -> None:
    proc = subprocess.run(["bash", str(flink_home() / "bin" / name), *args], env=_env(folder),
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SetupError(f"`{name} {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def taskmanager_pids() -> list[int]:
    """The live TaskManager JVMs of the cluster."""
    return _pids("*taskexecutor*.pid")


def _pids(pattern: str = "*.pid") -> list[int]:
    """The live JVMs whose pid files (matching `pattern`) the cluster's scripts wrote."""
    pids = []
    for path in subdir("cluster", "pid").glob(pattern):
        for line in path.read_text().split():
            try:
                pid = int(line)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, PermissionError):
                continue
            if not _zombie(pid):
                pids.append(pid)
    return pids


def _zombie(pid: int) -> bool:
    """Whether `pid` has exited but not been reaped (a killed daemon's parent is init, which may reap late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _rest(spec: ClusterSpec, path: str, timeout_s: float = 2.0) -> Any:
    url = f"http://localhost:{spec.rest_port}{path}"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def prometheus_endpoints(spec: ClusterSpec) -> dict[str, list[str]]:
    """Every Prometheus endpoint of the cluster's port range, by kind of JVM (`jobmanager`, `taskmanager`)."""
    found: dict[str, list[str]] = {"jobmanager": [], "taskmanager": []}
    low, high = spec.prometheus_ports
    for port in range(low, high + 1):
        if not _port_open(port):
            continue
        url = f"http://localhost:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError):
            continue
        if JOBMANAGER_METRIC in text:
            found["jobmanager"].append(url)
        elif "flink_taskmanager_" in text:
            found["taskmanager"].append(url)
    return found


def status(spec: ClusterSpec | None = None) -> ClusterStatus:
    """The cluster's state as its JobManager reports it (not running: nothing answers on the REST port)."""
    spec = spec or saved_spec()
    folder = _folder()
    result = ClusterStatus(False, f"localhost:{spec.rpc_port}", f"http://localhost:{spec.rest_port}", folder)
    try:
        overview = _rest(spec, "/overview")
    except (urllib.error.URLError, OSError, ValueError):
        return result
    result.running = True
    result.taskmanagers = int(overview.get("taskmanagers", 0))
    result.slots_total = int(overview.get("slots-total", 0))
    result.slots_available = int(overview.get("slots-available", 0))
    result.jobs_running = int(overview.get("jobs-running", 0))
    result.prometheus = prometheus_endpoints(spec)
    return result


def up(spec: ClusterSpec, *, timeout_s: float = 120.0) -> ClusterStatus:
    """Start the cluster unless it runs; wait until every TaskManager has registered and every JVM's Prometheus
    endpoint answers. `SetupError` (with the log to read) if it does not come up."""
    spec.check()
    current = status(saved_spec())
    if current.running:
        if saved_spec() != spec:
            raise SetupError("a cluster with another shape is running: `streamscore cluster down` first")
        missing = spec.taskmanagers - len(taskmanager_pids())
        if missing <= 0:
            return current
        for _ in range(missing):  # a TaskManager died (or was killed): start its replacement
            _script("taskmanager.sh", "start", folder=_folder())
        return _wait_up(spec, timeout_s)
    for port in (spec.rest_port, spec.rpc_port):
        if _port_open(port):
            raise SetupError(f"port {port} is taken by another process: stop it or choose other ports "
                             "(--rest-port, --rpc-port)")
    folder = _folder()
    _write_conf(spec, folder)
    _spec_path().write_text(json.dumps(asdict(spec)))
    _script("jobmanager.sh", "start", folder=folder)
    for _ in range(spec.taskmanagers):
        _script("taskmanager.sh", "start", folder=folder)
    return _wait_up(spec, timeout_s)


def _wait_up(spec: ClusterSpec, timeout_s: float) -> ClusterStatus:
    """Wait until every TaskManager has registered and every JVM's Prometheus endpoint answers."""
    current = status(spec)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        current = status(spec)
        endpoints = sum(len(v) for v in current.prometheus.values())
        alive = len(taskmanager_pids())
        # A killed TaskManager stays registered until its heartbeat times out: count the live JVMs too.
        # A TaskManager registers before its slot report arrives: wait for every slot too.
        slots = current.slots_total >= spec.taskmanagers * spec.slots
        if current.running and alive == spec.taskmanagers <= current.taskmanagers and endpoints > alive and slots:
            return current
        if not _pids():
            break
        time.sleep(1.0)
    log = subdir("cluster", "log")
    raise SetupError(f"the Flink cluster did not come up within {timeout_s:.0f} s (found {current.taskmanagers} "
                     f"of {spec.taskmanagers} TaskManagers); see the logs in {log}")


def down(*, grace_s: float = 30.0) -> bool:
    """Stop every TaskManager and the JobManager; True if any was running."""
    pids = _pids()
    if not pids:
        return False
    folder = _folder()
    for script in ("taskmanager.sh", "jobmanager.sh"):
        with contextlib.suppress(SetupError):  # whatever is left is killed below
            _script(script, "stop-all", folder=folder)
    deadline = time.monotonic() + grace_s
    while _pids() and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _pids():
        os.kill(pid, signal.SIGKILL)
    for path in subdir("cluster", "pid").glob("*.pid"):
        path.unlink()
    return True
