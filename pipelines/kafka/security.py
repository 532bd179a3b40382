"""Kafka client security: one set of settings (TLS, SASL) for every client the project makes.

The settings are librdkafka's property names, read from a properties file (`--kafka-config FILE` on any
command, or env `STREAMSCORE_KAFKA_CONFIG=FILE`); each key can also come from the environment as
`STREAMSCORE_KAFKA_<KEY>` with dots as underscores (e.g. `STREAMSCORE_KAFKA_SASL_PASSWORD`), which wins over
the file, so a password can stay out of it. One `KafkaSecurity` is mapped for each kind of client:
`librdkafka()` for confluent-kafka (CLI, publishing, admin, tools), `java_properties()` for the Flink Kafka
tables (`properties.*`), `aiokafka()` for the faust runtime.

Secrets (`sasl.password`, `ssl.key.password`) are held as `Secret`, whose `str`/`repr` is `***`: they reach
a client's configuration and nothing else (no message, log, run-info file or result names them).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.exceptions import ConfigError

#: The env var naming the properties file (what `--kafka-config` sets for the process and its children).
CONFIG_ENV = "STREAMSCORE_KAFKA_CONFIG"
ENV_PREFIX = "STREAMSCORE_KAFKA_"

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: Every key a file (or env) may set; anything else is refused rather than silently ignored.
KEYS = (
    "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location",
    "ssl.certificate.location", "ssl.key.location", "ssl.key.password", "ssl.endpoint.identification.algorithm",
)
_ALIASES = {"sasl.mechanisms": "sasl.mechanism"}  # librdkafka accepts both spellings
_SECRET_KEYS = ("sasl.password", "ssl.key.password")
#: The Flink SQL Kafka connector relocates kafka-clients: JAAS login modules are named by their shaded class.
FLINK_SHADED_PREFIX = "org.apache.flink.kafka.shaded."
_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


class Secret:
    """A secret value: `reveal()` gives it to a client configuration; printed or logged it is `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself (only for a client's configuration)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to and encrypt traffic with the brokers (PLAINTEXT when nothing is set)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    ca_location: Path | None = None
    certificate_location: Path | None = None
    key_location: Path | None = None
    key_password: Secret | None = field(default=None, repr=False)
    verify_hostname: bool = True
    source: str = "defaults"

    @property
    def uses_tls(self) -> bool:
        """Whether traffic is encrypted (SSL or SASL_SSL)."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """A one-line summary without secrets, for messages."""
        parts = [self.protocol]
        if self.uses_sasl:
            parts.append(f"{self.mechanism} as user {self.username!r}")
        if self.uses_tls:
            parts.append(f"CA {self.ca_location}" if self.ca_location else "system CAs")
        return ", ".join(parts) + f" (from {self.source})"

    # ------------------------------------------------------------------------------------------- mappings
    def librdkafka(self) -> dict[str, str]:
        """The settings as confluent-kafka (librdkafka) configuration entries."""
        if self.protocol == "PLAINTEXT":
            return {}
        conf = {"security.protocol": self.protocol}
        if self.uses_sasl:
            assert self.mechanism and self.username and self.password  # checked by `from_properties`
            conf |= {"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                     "sasl.password": self.password.reveal()}
        if self.uses_tls:
            if self.ca_location:
                conf["ssl.ca.location"] = str(self.ca_location)
            if self.certificate_location and self.key_location:
                conf["ssl.certificate.location"] = str(self.certificate_location)
                conf["ssl.key.location"] = str(self.key_location)
                if self.key_password:
                    conf["ssl.key.password"] = self.key_password.reveal()
            conf["ssl.endpoint.identification.algorithm"] = "https" if self.verify_hostname else "none"
        return conf

    def java_properties(self, *, shaded: bool = True) -> dict[str, str]:
        """The settings as Java Kafka client properties (without the `properties.` prefix of Flink's tables).
        `shaded`: name the JAAS login module as relocated in Flink's SQL Kafka connector jar."""
        if self.protocol == "PLAINTEXT":
            return {}
        props = {"security.protocol": self.protocol}
        if self.uses_sasl:
            assert self.mechanism and self.username and self.password
            module = (FLINK_SHADED_PREFIX if shaded else "") + _LOGIN_MODULES[self.mechanism]
            props |= {
                "sasl.mechanism": self.mechanism,
                "sasl.jaas.config": f"{module} required username={_jaas_quote(self.username)} "
                                    f"password={_jaas_quote(self.password.reveal())};",
            }
        if self.uses_tls:
            if self.ca_location:
                props |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.ca_location)}
            if self.certificate_location and self.key_location:
                props |= {"ssl.keystore.type": "PEM",
                          "ssl.keystore.certificate.chain": self.certificate_location.read_text(),
                          "ssl.keystore.key": self.key_location.read_text()}
                if self.key_password:
                    props["ssl.key.password"] = self.key_password.reveal()
            props["ssl.endpoint.identification.algorithm"] = "https" if self.verify_hostname else ""
        return props

    def aiokafka(self) -> dict[str, Any]:
        """The settings as aiokafka client keyword arguments (the faust runtime's producers and consumers)."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_sasl:
            assert self.password is not None
            kwargs |= {"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                       "sasl_plain_password": self.password.reveal()}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the configured CA (else the system's) and presents the client
        certificate if one is configured."""
        context = ssl.create_default_context(cafile=str(self.ca_location) if self.ca_location else None)
        if not self.verify_hostname:
            context.check_hostname = False
        if self.certificate_location and self.key_location:
            context.load_cert_chain(str(self.certificate_location), str(self.key_location),
                                    self.key_password.reveal() if self.key_password else None)
        return context


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------------- loading
def parse_properties(text: str, source: str) -> dict[str, str]:
    """`key=value` lines (`#`/`!` comments and blank lines skipped; `:` also separates) as a dict."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        separator = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if separator < 0:
            raise ConfigError(f"{source} line {number}: expected key=value, got {line.split()[0]!r}...")
        entries[line[:separator].strip()] = line[separator + 1:].strip()
    return entries


def from_properties(entries: Mapping[str, str], source: str) -> KafkaSecurity:
    """Validated settings from librdkafka-style entries; `ConfigError` naming the key and what to do."""
    values: dict[str, str] = {}
    for key, value in entries.items():
        key = _ALIASES.get(key, key)
        if key not in KEYS:
            raise ConfigError(f"{source}: unsupported Kafka client setting {key!r}; supported: {', '.join(KEYS)}")
        values[key] = value
    protocol = values.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{source}: security.protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    sasl = protocol.startswith("SASL_")
    mechanism = values.get("sasl.mechanism", "").upper() or None
    if sasl:
        if mechanism not in MECHANISMS:
            raise ConfigError(f"{source}: security.protocol {protocol} needs sasl.mechanism, one of "
                              f"{', '.join(MECHANISMS)} (got {mechanism!r})")
        missing = [k for k in ("sasl.username", "sasl.password") if not values.get(k)]
        if missing:
            raise ConfigError(f"{source}: security.protocol {protocol} needs {' and '.join(missing)} (the password "
                              f"may come from env {env_name('sasl.password')})")
    elif any(k.startswith("sasl.") for k in values):
        raise ConfigError(f"{source}: sasl.* settings need security.protocol SASL_SSL or SASL_PLAINTEXT "
                          f"(got {protocol})")
    tls = protocol in ("SSL", "SASL_SSL")
    paths = {k: Path(values[k]).expanduser() for k in
             ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location") if values.get(k)}
    if paths and not tls:
        raise ConfigError(f"{source}: ssl.* files need security.protocol SSL or SASL_SSL (got {protocol})")
    for key, path in paths.items():
        if not path.is_file():
            raise ConfigError(f"{source}: {key} {path} is not a readable file")
    if ("ssl.certificate.location" in paths) != ("ssl.key.location" in paths):
        raise ConfigError(f"{source}: a client certificate needs both ssl.certificate.location and ssl.key.location")
    algorithm = values.get("ssl.endpoint.identification.algorithm", "https").lower()
    if algorithm not in ("https", "none", ""):
        raise ConfigError(f"{source}: ssl.endpoint.identification.algorithm must be https or none, got {algorithm!r}")
    return KafkaSecurity(
        protocol=protocol,
        mechanism=mechanism if sasl else None,
        username=values.get("sasl.username") if sasl else None,
        password=Secret(values["sasl.password"]) if sasl else None,
        ca_location=_resolved(paths, "ssl.ca.location"),
        certificate_location=_resolved(paths, "ssl.certificate.location"),
        key_location=_resolved(paths, "ssl.key.location"),
        key_password=Secret(values["ssl.key.password"]) if values.get("ssl.key.password") else None,
        verify_hostname=algorithm == "https",
        source=source,
    )


def _resolved(paths: Mapping[str, Path], key: str) -> Path | None:
    return paths[key].resolve() if key in paths else None


def env_name(key: str) -> str:
    """The env var that sets `key`, e.g. `STREAMSCORE_KAFKA_SASL_PASSWORD`."""
    return ENV_PREFIX + key.upper().replace(".", "_")


def load(path: Path | None, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """The settings of the properties file `path` (if any) overlaid with `STREAMSCORE_KAFKA_*` env vars."""
    environ = os.environ if environ is None else environ
    entries: dict[str, str] = {}
    sources = []
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the Kafka client config {path}: {exc.strerror}") from None
        entries = {_ALIASES.get(k, k): v for k, v in parse_properties(text, str(path)).items()}
        sources.append(str(path))
    from_env = {key: environ[env_name(key)] for key in KEYS if env_name(key) in environ}
    if from_env:
        entries |= from_env
        sources.append("env " + ", ".join(env_name(k) for k in from_env))
    return from_properties(entries, " + ".join(sources) or "defaults")


_cache: tuple[tuple[Any, ...], KafkaSecurity] | None = None


def active() -> KafkaSecurity:
    """The settings of this process: env `STREAMSCORE_KAFKA_CONFIG` (set by `--kafka-config`) and the
    `STREAMSCORE_KAFKA_*` overrides; read again whenever those change."""
    global _cache
    path = os.environ.get(CONFIG_ENV) or None
    stamp = None
    if path is not None:
        try:
            stamp = Path(path).stat().st_mtime_ns
        except OSError:
            stamp = None
    key = (path, stamp, tuple(os.environ.get(env_name(k)) for k in KEYS))
    if _cache is None or _cache[0] != key:
        _cache = (key, load(Path(path) if path else None))
    return _cache[1]


def use_config_file(path: Path) -> KafkaSecurity:
    """Make `path` this process's (and its children's) Kafka client config, after validating it."""
    security = load(path)
    os.environ[CONFIG_ENV] = str(path.resolve())
    return security


def secrets() -> list[str]:
    """The secret values of the active settings (for redaction of text that may carry them)."""
    security = active()
    return [s.reveal() for s in (security.password, security.key_password) if s is not None and s.reveal()]


def redact(text: str) -> str:
    """`text` with every active secret replaced by `***`."""
    for secret in secrets():
        text = text.replace(secret, "***")
    return text
