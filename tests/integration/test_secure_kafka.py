"""A secured Kafka: the project's broker with only a SASL_SSL listener (SCRAM-SHA-512 over TLS, a CA the test
makes), and every client of the project given the same settings by `--kafka-config FILE`: publishing, the
Flink risk job (its Kafka tables), the faust runtime (aiokafka), reading results and dead letters back.

Also: a wrong password fails at once with a message saying so (not a timeout); a plaintext client is told the
broker may need --kafka-config; and the password appears in none of the logs, results, dead letters, run-info
files, checkpoints, command outputs or `--help` texts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from operators.dead_letter import DeadLetter
from operators.risk.schemas import RiskResult
from pipelines.infra import broker
from pipelines.infra.home import home
from pipelines.infra.jars import FLINK_CONNECTORS, KAFKA_BROKER, ensure_jars
from pipelines.infra.tls import make_dev_certificates
from pipelines.kafka import security
from pipelines.kafka.clients import consume
from pipelines.kafka.publishing import synthetic_events

from .test_recovery import _offline, _same_as_offline

pytestmark = pytest.mark.integration

SECURE_PORT = int(os.environ.get("STREAMSCORE_SECURE_TEST_PORT", "19792"))
PASSWORD = "s3cret-" + uuid.uuid4().hex  # what must never be printed, logged or written outside the config
BAD_RECORDS = [b"{not json", b'{"event_id": "x"}', b"\xff\xfe"]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A secure broker on SECURE_PORT with its own home (jars shared); yields (bootstrap, client config, home)."""
    jars = home() / "jars"
    ensure_jars(KAFKA_BROKER)
    ensure_jars(FLINK_CONNECTORS)
    root = tmp_path_factory.mktemp("secure")
    own_home = root / "home"
    own_home.mkdir()
    (own_home / "jars").symlink_to(jars, target_is_directory=True)
    tls = make_dev_certificates(root / "tls")
    config = root / "client.properties"
    config.write_text(
        "# the test's client\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=scorer\n"
        f"sasl.password={PASSWORD}\nssl.ca.location={tls.ca}\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMSCORE_HOME", str(own_home))
        up = _cli(_env(own_home), "kafka", "up", "--port", str(SECURE_PORT), "--secure", "--tls-dir",
                  str(tls.ca.parent), "--kafka-config", str(config))
        assert up.returncode == 0, up.stderr
        try:
            yield f"127.0.0.1:{SECURE_PORT}", config, own_home
        finally:
            broker.down(SECURE_PORT)


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def _env(own_home: Path) -> dict[str, str]:
    return {**os.environ, "STREAMSCORE_HOME": str(own_home)}


def _read(bootstrap: str, config: Path, topic: str, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    monkeypatch.setenv(security.CONFIG_ENV, str(config))
    return [r.value for r in consume(bootstrap, topic, timeout_s=4)]


@pytest.mark.parametrize("runtime", ["flink", "faust"])
def test_the_risk_job_runs_end_to_end_through_a_sasl_ssl_broker(
    secure: tuple[str, Path, Path], runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap, config, own_home = secure
    env = _env(own_home)
    run = uuid.uuid4().hex[:8]
    source, output, dlq = f"sec-{run}.in", f"sec-{run}.out", f"sec-{run}.dlq"
    events = synthetic_events("risk", 400, 11)
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b"\n".join([*(msgspec.json.encode(e) for e in events), *BAD_RECORDS]) + b"\n")
    common = ("--bootstrap", bootstrap, "--kafka-config", str(config))
    proc = _cli(env, "publish", "risk", "--file", str(lines), "--topic", source, *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = [proc.stdout + proc.stderr]
    state = ["--checkpoint-dir", str(tmp_path / "checkpoints")] if runtime == "flink" else \
        ["--state-dir", str(tmp_path / "state")]
    job = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "run", "risk", "--bounded", "--runtime", runtime, "--input-topic",
         source, "--output-topic", output, "--dlq-topic", dlq, *state, *common],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    run_info: dict[Path, bytes] = {}  # the job's run-info files, read while it runs (removed when it ends)
    while job.poll() is None:
        for path in (own_home / "run").glob("*/*.json"):
            with contextlib.suppress(FileNotFoundError):
                run_info[path] = path.read_bytes()
        time.sleep(0.2)
    out, _ = job.communicate()
    assert job.returncode == 0, out.decode()[-3000:]
    outputs.append(out.decode())

    results = [msgspec.json.decode(v, type=RiskResult) for v in _read(bootstrap, config, output, monkeypatch)]
    _same_as_offline(results, _offline(events))
    letters = [msgspec.json.decode(v, type=DeadLetter) for v in _read(bootstrap, config, dlq, monkeypatch)]
    assert sorted(letter.raw for letter in letters) == sorted(
        r.decode("utf-8", "backslashreplace") for r in BAD_RECORDS)

    # The password is nowhere but in the client config: not in command output, results, dead letters, logs,
    # run-info files, checkpoints or the faust state (the broker folder keeps only its own secret).
    assert not any(PASSWORD in text for text in outputs)
    assert not any(PASSWORD.encode() in v for v in _read(bootstrap, config, output, monkeypatch))
    assert not any(PASSWORD.encode() in v for v in _read(bootstrap, config, dlq, monkeypatch))
    files = [p for folder in (own_home, tmp_path) for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
             and "jars" not in p.relative_to(folder).parts]
    if runtime == "flink":  # what was searched: the job's logs, run-info file and checkpoints
        assert any(p.suffix == ".log" and "flink" in p.parts for p in files)
        assert any("checkpoints" in p.parts for p in files)
        assert run_info and not any(PASSWORD.encode() in content for content in run_info.values())
    assert [p for p in files if PASSWORD.encode() in p.read_bytes()] == []


def test_a_wrong_password_fails_at_once_and_says_so(secure: tuple[str, Path, Path], tmp_path: Path) -> None:
    bootstrap, config, own_home = secure
    wrong = "not-" + PASSWORD
    bad = tmp_path / "bad.properties"
    bad.write_text(config.read_text().replace(PASSWORD, wrong))
    for args in (["publish", "risk", "--events", "10"], ["run", "risk", "--bounded"], ["consume", "risk.scores"]):
        proc = _cli(_env(own_home), *args, "--bootstrap", bootstrap, "--kafka-config", str(bad), timeout=120)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "refused the credentials" in proc.stderr and "user 'scorer'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert wrong not in proc.stdout + proc.stderr and PASSWORD not in proc.stdout + proc.stderr


def test_a_plaintext_client_is_pointed_at_kafka_config(secure: tuple[str, Path, Path]) -> None:
    bootstrap, _, own_home = secure
    env = {k: v for k, v in _env(own_home).items() if not k.startswith(security.ENV_PREFIX)}
    proc = _cli(env, "publish", "risk", "--events", "10", "--bootstrap", bootstrap, timeout=120)
    assert proc.returncode == 1
    assert "--kafka-config" in proc.stderr and bootstrap in proc.stderr, proc.stderr


def test_help_never_shows_the_password(secure: tuple[str, Path, Path]) -> None:
    _, config, own_home = secure
    env = {**_env(own_home), security.CONFIG_ENV: str(config), security.env_name("sasl.password"): PASSWORD}
    for command in ([], ["run"], ["publish"], ["kafka"], ["consume"], ["backtest"], ["state"], ["dlq"]):
        proc = _cli(env, *command, "--help", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "--kafka-config" in proc.stdout
        assert PASSWORD not in proc.stdout + proc.stderr
