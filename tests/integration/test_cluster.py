"""`streamscore cluster up|status|down`: a real standalone Flink session cluster from the apache-flink package's
own distribution (JobManager + 2 TaskManager JVMs), with a Prometheus endpoint per JVM."""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from pipelines.cli import main
from pipelines.infra import cluster

from .conftest import streamscore

pytestmark = pytest.mark.integration

PORTS = ("--rest-port", "18181", "--rpc-port", "16223", "--prometheus-ports", "19350-19359")


@pytest.fixture
def two_taskmanagers() -> Iterator[dict[str, object]]:
    up = streamscore("cluster", "up", "--taskmanagers", "2", "--slots", "2", *PORTS, "--json", timeout=240)
    try:
        yield json.loads(up.stdout)
    finally:
        streamscore("cluster", "down", timeout=120)


def test_cluster_up_starts_a_jobmanager_and_two_taskmanagers_with_prometheus_and_down_stops_them(
    two_taskmanagers: dict[str, object],
) -> None:
    status = two_taskmanagers
    assert status["running"] is True
    assert status["taskmanagers"] == 2 and status["slots_total"] == 4 and status["slots_available"] == 4
    assert status["web_ui"] == "http://localhost:18181"
    prometheus = status["prometheus"]
    assert isinstance(prometheus, dict)
    assert len(prometheus["jobmanager"]) == 1 and len(prometheus["taskmanager"]) == 2
    for url in prometheus["taskmanager"]:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert "flink_taskmanager_Status_JVM_Memory_Heap_Used" in response.read().decode()
    with urllib.request.urlopen(prometheus["jobmanager"][0], timeout=5) as response:
        text = response.read().decode()
    assert re.search(r"^flink_jobmanager_numRegisteredTaskManagers(\{[^}]*\})? 2\.0$", text, re.MULTILINE), text[:2000]
    # The configuration the JVMs run with is the cluster's own (RocksDB, retained checkpoints, thread mode).
    with urllib.request.urlopen("http://localhost:18181/jobmanager/config", timeout=5) as response:
        config = {entry["key"]: entry["value"] for entry in json.loads(response.read())}
    assert config["state.backend.type"] == "rocksdb"
    assert config["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert config["python.execution-mode"] == "thread"
    # `up` again is a no-op that reports the same cluster; `status` agrees.
    again = json.loads(streamscore("cluster", "up", "--taskmanagers", "2", "--slots", "2", *PORTS, "--json").stdout)
    assert again["taskmanagers"] == 2
    assert json.loads(streamscore("cluster", "status", "--json").stdout)["slots_total"] == 4
    # `down` stops every JVM.
    pids = cluster._pids()
    assert len(pids) == 3
    streamscore("cluster", "down", timeout=120)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not cluster.status().running
    assert "no Flink cluster was running" in streamscore("cluster", "down").stdout


def test_cluster_up_refuses_a_taken_port_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["cluster", "up", "--rest-port", str(port), "--rpc-port", "16224"]) != 0
    err = capsys.readouterr().err
    assert f"port {port} is taken" in err and "--rest-port" in err and "Traceback" not in err, err
    assert not cluster._pids()
