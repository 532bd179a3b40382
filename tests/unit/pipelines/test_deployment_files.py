"""The deployment files describe what the local cluster really runs (no Docker or Kubernetes here, so this is
asserted instead of run): files parse; the image, ports, service names, Prometheus targets, Flink configuration
keys and job arguments agree with `streamscore cluster up`'s configuration and the CLI; the Grafana dashboard
only queries metric names the project defines (a real scrape finds them: tests/integration/test_job_metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pipelines.cli import parser as build_parser
from pipelines.infra.cluster import ClusterSpec, configuration, flink_home, python_jars
from pipelines.infra.container import CONTAINER_KEYS, DATA_DIR, PROMETHEUS_PORT, container_configuration
from pipelines.infra.jars import KAFKA_VERSION
from pipelines.runtimes.flink.job_files import PACKAGES

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "scripts" / "deploy"
TASKMANAGERS = ("taskmanager-1", "taskmanager-2")
#: Where the dashboard's metric names come from: operator metrics (functions.py) as the Prometheus reporter
#: names them, and Flink's own job/task metrics.
DASHBOARD_METRIC = re.compile(r"\bflink_[A-Za-z0-9_]+")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _k8s() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "flinkdeployment.yaml").read_text()))


def dashboard_metric_names() -> set[str]:
    """Every metric name a query of the provisioned Grafana dashboard uses."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "streamscore.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in DASHBOARD_METRIC.findall(expr)}


def test_compose_runs_kafka_a_jobmanager_two_taskmanagers_a_submitter_prometheus_and_grafana() -> None:
    services = _compose()["services"]
    assert set(services) == {"kafka", "jobmanager", *TASKMANAGERS, "submit", "prometheus", "grafana"}
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"  # the broker version `kafka up` runs
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    for name in ("jobmanager", *TASKMANAGERS, "submit"):
        service = services[name]
        assert service["build"]["dockerfile"] == "scripts/deploy/Dockerfile", name
        assert service["image"] == "streamscore:latest", name
        assert any(v.endswith(f":{DATA_DIR}") for v in service["volumes"]), f"{name} shares the checkpoint volume"
    assert services["jobmanager"]["command"] == "jobmanager"
    assert all(services[tm]["command"] == "taskmanager" and services[tm]["hostname"] == tm for tm in TASKMANAGERS)
    assert f"{ClusterSpec().rest_port}:{ClusterSpec().rest_port}" in services["jobmanager"]["ports"]


def test_the_submitter_runs_a_real_cli_command_against_the_compose_services() -> None:
    services = _compose()["services"]
    command = services["submit"]["command"]
    args = build_parser().parse_args(command[1:])
    assert args.target == "remote" and args.jobmanager == f"jobmanager:{ClusterSpec().rest_port}"
    internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")[0].split("//")[1]
    assert args.bootstrap == internal


def test_prometheus_scrapes_every_flink_jvm_on_the_reporter_port_the_containers_use() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{host}:{PROMETHEUS_PORT}" for host in ("jobmanager", *TASKMANAGERS)}
    assert container_configuration("jobmanager", "x")["metrics.reporter.prom.port"] == str(PROMETHEUS_PORT)


def test_the_container_configuration_is_the_local_clusters_but_for_networking_and_storage() -> None:
    local = configuration(ClusterSpec(), Path("/anywhere"))
    container = container_configuration("jobmanager", "taskmanager-1")
    assert set(container) == set(local)
    assert {key for key in local if local[key] != container[key]} == CONTAINER_KEYS
    assert container["execution.checkpointing.dir"].startswith(DATA_DIR.as_uri())


def test_the_image_installs_every_package_java_17_and_exposes_the_ports_the_configuration_uses() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile and "openjdk-17" in dockerfile
    for package in PACKAGES:
        assert f"COPY {package} {package}" in dockerfile
    assert "pipelines.infra.setup_jars" in dockerfile  # the connector jar, by Maven, as `make setup` does
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)[0].split()}
    assert exposed == {ClusterSpec().rest_port, ClusterSpec().rpc_port, PROMETHEUS_PORT}
    entrypoint = (DEPLOY / "entrypoint.sh").read_text()
    assert "pipelines.infra.container" in entrypoint and "start-foreground" in entrypoint


def test_the_flinkdeployment_runs_the_cluster_configuration_with_the_autoscaler() -> None:
    claim, deployment = _k8s()
    assert claim["kind"] == "PersistentVolumeClaim"
    assert deployment["apiVersion"] == "flink.apache.org/v1beta1" and deployment["kind"] == "FlinkDeployment"
    assert deployment["spec"]["image"] == _compose()["services"]["jobmanager"]["image"]
    flink = deployment["spec"]["flinkConfiguration"]
    container = container_configuration("jobmanager", "x")
    operator_owned = {key for key in container if re.search(r"address|host|\.port$|memory|rest\.", key)}
    operator_owned -= {"metrics.reporter.prom.port"}
    for key, value in container.items():
        if key in operator_owned or key in ("parallelism.default", "python.executable", "python.client.executable"):
            continue
        assert str(flink.get(key)) == value, key
    assert flink["python.executable"] == flink["python.client.executable"] == "/opt/venv/bin/python"
    assert flink["job.autoscaler.enabled"] == "true"
    assert 0 < float(flink["job.autoscaler.target.utilization"]) < 1
    assert flink["job.autoscaler.vertex.max-parallelism"] == container["pipeline.max-parallelism"]


def test_the_flinkdeployment_job_is_pyflinks_driver_running_a_real_cli_command() -> None:
    job = _k8s()[1]["spec"]["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    jar = job["jarURI"].removeprefix("local:///opt/flink/")
    assert (flink_home() / jar).exists() and (flink_home() / jar) in python_jars()  # the version installed here
    args = job["args"]
    module = args.index("-pym")
    assert args[module + 1] == "pipelines"
    parsed = build_parser().parse_args(args[module + 2:])
    assert parsed.pipeline == "risk" and parsed.parallelism == job["parallelism"]
    mounts = _k8s()[1]["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [str(DATA_DIR)]


def test_the_dashboard_queries_only_metrics_the_project_and_flink_define() -> None:
    names = dashboard_metric_names()
    operator = {n.removeprefix("flink_taskmanager_job_task_operator_") for n in names if "_operator_" in n}
    assert operator == {"events_scored", "reason_dead_letters", "decision_decisions", "send_to_scored_ms_p50",
                        "send_to_scored_ms_p99", "send_to_scored_ms_max", "model_model_version",
                        "duplicate_events", "model_swaps"}
    assert "flink_jobmanager_job_lastCheckpointDuration" in names  # checkpoint duration
    assert "flink_taskmanager_job_task_backPressuredTimeMsPerSecond" in names  # backpressure


def test_the_entrypoint_helper_writes_the_container_configuration_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.infra import container

    monkeypatch.setenv("FLINK_CONF_DIR", str(tmp_path / "conf"))
    monkeypatch.setenv("JOBMANAGER_HOST", "jobmanager")
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path / "home"))
    assert container.main(["taskmanager"]) == 0
    written = yaml.safe_load((tmp_path / "conf" / "config.yaml").read_text())
    assert written["jobmanager.rpc.address"] == "jobmanager" and written["metrics.reporter.prom.port"] == "9249"
    exports = dict(line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert set(exports) == {"FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LIB_DIR"}
    lib = Path(exports["FLINK_LIB_DIR"])
    assert any(jar.name.startswith("flink-python-") for jar in lib.iterdir())  # loaded once per JVM
    assert container.main(["nonsense"]) == 2
