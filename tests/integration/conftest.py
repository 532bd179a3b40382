"""Integration fixtures: the real single-node Kafka broker (started once per session), a 3-broker cluster (per
module) and unique topics."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.infra import broker
from pipelines.infra.home import home
from pipelines.infra.jars import KAFKA_BROKER, ensure_jars
from pipelines.kafka.clients import ensure_topics

TEST_PORT = int(os.environ.get("STREAMSCORE_TEST_PORT", "19292"))
#: The 3-broker cluster's first port (its nodes use this port and the next five).
CLUSTER_PORT = int(os.environ.get("STREAMSCORE_CLUSTER_TEST_PORT", "19892"))


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """Bootstrap servers of the project broker on the test port (started here if `make` did not)."""
    started = not broker.status(TEST_PORT).running
    status = broker.up(TEST_PORT)
    yield status.bootstrap
    if started:
        broker.down(TEST_PORT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-broker cluster on `CLUSTER_PORT` in a home of its own (sharing the fetched jars; the module's jobs inherit
    it); its bootstrap servers. Stopped after the module."""
    ensure_jars(KAFKA_BROKER)
    own_home = tmp_path_factory.mktemp("cluster-home")
    (own_home / "jars").symlink_to(home() / "jars", target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMSCORE_HOME", str(own_home))
        try:
            status = broker.up(CLUSTER_PORT, brokers=3)
            assert status.running and len(status.nodes) == 3
            yield status.bootstrap
        finally:
            broker.down(CLUSTER_PORT)


@dataclass(frozen=True)
class Topics:
    """A fresh input, output and dead-letter topic triple for one test."""

    input: str
    output: str
    dlq: str


@pytest.fixture
def topics(bootstrap: str) -> Topics:
    """Unique topics for one test, created on the broker."""
    run = uuid.uuid4().hex[:10]
    names = Topics(f"it-{run}.in", f"it-{run}.out", f"it-{run}.dlq")
    ensure_topics(bootstrap, [names.input, names.output, names.dlq])
    return names


def streamscore(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the `streamscore` CLI in a subprocess (its own Flink mini-cluster), failing loudly on error."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"streamscore {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
            f"stderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def run_bounded(bootstrap: str, topics: Topics, checkpoint_dir: Path, *extra: str) -> None:
    """Run the risk job over what is in `topics.input` now and wait until it finished and committed."""
    streamscore(
        "--bootstrap", bootstrap, "run", "risk", "--bounded",
        "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
        "--checkpoint-dir", str(checkpoint_dir), *extra,
    )


def start_job(
    bootstrap: str, topics: Topics, checkpoint_dir: Path | None, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """Start an unbounded risk job in its own process group (the Flink mini-cluster JVM is its child);
    `checkpoint_dir` None for the faust runtime (it has none)."""
    checkpoints = ("--checkpoint-dir", str(checkpoint_dir)) if checkpoint_dir is not None else ()
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines", "--bootstrap", bootstrap, "run", "risk",
             "--input-topic", topics.input, "--output-topic", topics.output, "--dlq-topic", topics.dlq,
             *checkpoints, *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


@pytest.fixture
def private_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the committed model registry in `tmp_path`, made the one every process of the test reads
    (jobs, CLI commands, the test itself), so promotions stay inside the test."""
    from models.registry import DEFAULT_ROOT, REGISTRY_ENV

    root = tmp_path / "registry"
    shutil.copytree(DEFAULT_ROOT, root)
    monkeypatch.setenv(REGISTRY_ENV, str(root))
    return root


def config_following_promotions(default: Path, out: Path, refresh_s: float = 0.5) -> Path:
    """The pipeline YAML `default` with `model_refresh_seconds: refresh_s`, written to `out`."""
    import yaml

    config = yaml.safe_load(default.read_text(encoding="utf-8"))
    config["model_refresh_seconds"] = refresh_s
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    return out
