"""Fetches the jars streamscore runs on (Kafka broker, Flink Kafka connector) with Maven into the home folder.

Each bundle is a set of Maven coordinates; a generated pom and `mvn dependency:copy-dependencies` put the
jars and their runtime dependencies into `<home>/jars/<bundle>/`. A marker file makes repeated calls free.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.exceptions import SetupError
from pipelines.infra.home import subdir

KAFKA_VERSION = "4.1.1"
FLINK_KAFKA_CONNECTOR = "org.apache.flink:flink-sql-connector-kafka:5.0.0-2.2"


@dataclass(frozen=True)
class JarBundle:
    """A named set of Maven artifacts (`group:artifact:version`), optionally without transitive deps."""

    name: str
    artifacts: tuple[str, ...]
    transitive: bool = True


KAFKA_BROKER = JarBundle(
    f"kafka-{KAFKA_VERSION}",
    (
        f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
        "org.slf4j:slf4j-api:2.0.17",
        "org.apache.logging.log4j:log4j-slf4j2-impl:2.24.3",
        "org.apache.logging.log4j:log4j-core:2.24.3",
    ),
)
# The SQL connector is a shaded jar that already contains kafka-clients.
FLINK_CONNECTORS = JarBundle("flink-connectors-2.2", (FLINK_KAFKA_CONNECTOR,), transitive=False)

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.streamscore</groupId>
  <artifactId>{name}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
_DEPENDENCY = """    <dependency>
      <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>{exclusions}
    </dependency>"""
_NO_TRANSITIVE = (
    "\n      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
)


def render_pom(bundle: JarBundle) -> str:
    """The pom.xml that resolves `bundle`."""
    deps = []
    for coordinate in bundle.artifacts:
        group, artifact, version = coordinate.split(":")
        exclusions = "" if bundle.transitive else _NO_TRANSITIVE
        deps.append(_DEPENDENCY.format(group=group, artifact=artifact, version=version, exclusions=exclusions))
    return _POM.format(name=bundle.name, dependencies="\n".join(deps))


def ensure_jars(bundle: JarBundle) -> Path:
    """The folder holding `bundle`'s jars, fetching them with Maven first if needed."""
    target = subdir("jars", bundle.name)
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SetupError("Maven (`mvn`) is not on PATH: install Maven 3.8+ and Java 17, then retry.")
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(render_pom(bundle))
        command = [
            mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
            f"-DoutputDirectory={target}", "-DincludeScope=runtime",
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SetupError(
            f"Maven could not fetch {bundle.name} ({', '.join(bundle.artifacts)}):\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\nCheck network access to Maven Central."
        )
    marker.write_text("\n".join(bundle.artifacts) + "\n")
    return target


def jar_paths(bundle: JarBundle) -> list[Path]:
    """All jar files of `bundle`, fetched if needed."""
    return sorted(ensure_jars(bundle).glob("*.jar"))
