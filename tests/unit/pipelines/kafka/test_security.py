"""Kafka client security settings: one properties file (and env overrides) mapped for every kind of client,
refused with a message naming the problem when wrong, and never printing the secret."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pipelines.exceptions import ConfigError
from pipelines.infra.tls import make_dev_certificates
from pipelines.kafka import security
from pipelines.kafka.clients import client_config
from pipelines.runtimes.flink.kafka_tables import sink_ddl, source_ddl
from pipelines.runtimes.flink.options import JobOptions

PASSWORD = 'pa"ss\\word-42'


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dev_certificates(tmp_path_factory.mktemp("tls")).ca


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "client.properties"
    path.write_text(text)
    return path


def _scram(ca: Path) -> str:
    return (f"# comment\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username=alice\n"
            f"sasl.password={PASSWORD}\nssl.ca.location={ca}\n")


def test_a_scram_tls_file_maps_onto_every_client(tmp_path: Path, ca: Path) -> None:
    settings = security.load(_write(tmp_path, _scram(ca)), environ={})
    assert settings.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
        "sasl.password": PASSWORD, "ssl.ca.location": str(ca.resolve()),
        "ssl.endpoint.identification.algorithm": "https",
    }
    java = settings.java_properties()
    assert java["sasl.jaas.config"] == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="alice" password="pa\\"ss\\\\word-42";'
    )
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == str(ca.resolve())
    assert settings.java_properties(shaded=False)["sasl.jaas.config"].startswith("org.apache.kafka.common")
    aio = settings.aiokafka()
    assert (aio["security_protocol"], aio["sasl_mechanism"], aio["sasl_plain_username"],
            aio["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "alice", PASSWORD)
    assert isinstance(aio["ssl_context"], ssl.SSLContext) and aio["ssl_context"].check_hostname


def test_plaintext_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [security.CONFIG_ENV, *(security.env_name(k) for k in security.KEYS)]:
        monkeypatch.delenv(name, raising=False)
    assert security.active() == security.KafkaSecurity()
    assert client_config("h:1", **{"group.id": "g"}) == {"bootstrap.servers": "h:1", "group.id": "g"}


def test_the_active_settings_reach_confluent_clients_and_the_flink_tables(
    tmp_path: Path, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(security.CONFIG_ENV, str(_write(tmp_path, _scram(ca))))
    assert client_config("h:1")["sasl.username"] == "alice"
    options = JobOptions(pipeline="risk", bootstrap="h:1", input_topic="i", output_topic="o", dlq_topic="d",
                         checkpoint_dir=tmp_path)
    for ddl in (source_ddl("s", options), sink_ddl("r", "o", options, id_suffix="results")):
        assert "'properties.security.protocol' = 'SASL_SSL'" in ddl
        assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in ddl
        assert "ScramLoginModule required" in ddl


def test_env_vars_override_the_file_so_the_password_can_stay_out_of_it(
    tmp_path: Path, ca: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, _scram(ca).replace(f"sasl.password={PASSWORD}\n", ""))
    with pytest.raises(ConfigError, match=r"needs sasl.password .*STREAMSCORE_KAFKA_SASL_PASSWORD"):
        security.load(path, environ={})
    monkeypatch.setenv(security.CONFIG_ENV, str(path))
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_PASSWORD", "from-env")
    settings = security.active()
    assert settings.password == security.Secret("from-env")
    assert "STREAMSCORE_KAFKA_SASL_PASSWORD" in settings.source
    monkeypatch.setenv("STREAMSCORE_KAFKA_SASL_PASSWORD", "changed")
    assert security.active().librdkafka()["sasl.password"] == "changed"  # read again when the env changes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\nsasl.username=a\nsasl.password=p\n",
         "needs sasl.mechanism, one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.password=p\n", "needs sasl.username"),
        ("security.protocol=TLS\n", "security.protocol must be one of"),
        ("security.protocol=SSL\nssl.ca.location=/nonexistent/ca.pem\n", "is not a readable file"),
        ("sasl.username=a\n", "need security.protocol SASL_SSL or SASL_PLAINTEXT"),
        ("security.protocol=PLAINTEXT\nssl.ca.location=CA\n", "need security.protocol SSL or SASL_SSL"),
        ("security.protocol=SSL\nssl.keystore.location=x.jks\n", "unsupported Kafka client setting 'ssl.keystore"),
        ("security.protocol=SSL\nssl.endpoint.identification.algorithm=dns\n", "must be https or none"),
        ("just words\n", "line 1: expected key=value"),
    ],
)
def test_a_wrong_setting_is_refused_with_what_to_do(tmp_path: Path, ca: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text.replace("=CA", f"={ca}"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as caught:
        security.load(path, environ={})
    assert "p\n" not in str(caught.value) and str(path) in str(caught.value)


def test_no_summary_or_repr_shows_the_secret(tmp_path: Path, ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = security.load(_write(tmp_path, _scram(ca)), environ={})
    for text in (repr(settings), str(settings), settings.describe(), repr(settings.password), f"{settings.password}"):
        assert PASSWORD not in text
    assert "SCRAM-SHA-512 as user 'alice'" in settings.describe()
    monkeypatch.setenv(security.CONFIG_ENV, str(tmp_path / "client.properties"))
    assert security.redact(f"error with {PASSWORD} inside") == "error with *** inside"


def test_the_cli_takes_kafka_config_on_any_subcommand_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    monkeypatch.delenv(security.CONFIG_ENV, raising=False)
    bad = _write(tmp_path, "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.username=u\n"
                           f"sasl.password={PASSWORD}\nbogus.key=1\n")
    assert main(["dlq", "count", "--kafka-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "unsupported Kafka client setting 'bogus.key'" in err and PASSWORD not in err
    assert main(["--kafka-config", str(tmp_path / "missing.properties"), "dlq", "count"]) == 1
    assert "cannot read the Kafka client config" in capsys.readouterr().err
