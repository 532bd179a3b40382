"""Builds the Flink runtime's Java operator (`pipelines/runtimes/flink/java`) with Maven into the home folder.

The jar is built from the sources in this repository (never committed): `mvn package` in a copy of the source
folder, compiled against the installed apache-flink package's `flink-dist` and `flink-python` jars (PyFlink's
embedded operators and pemja are not on Maven Central), so the classes match the Flink that runs them. The jar's
folder is named by a digest of the sources, so an edit rebuilds it and an unchanged tree costs nothing. After the
first build Maven's plugins are in the local repository and later builds work offline.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from pipelines.exceptions import SetupError
from pipelines.infra.home import subdir

SOURCES = Path(__file__).resolve().parents[1] / "runtimes" / "flink" / "java"
JAR_NAME = "streamscore-flink-operator.jar"


def source_digest(root: Path = SOURCES) -> str:
    """A digest of the operator's sources (pom and Java files)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "target" not in p.relative_to(root).parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _flink_jars() -> tuple[Path, Path]:
    from pipelines.infra.cluster import flink_home

    home = flink_home()
    dist = sorted((home / "lib").glob("flink-dist-*.jar"))
    python = sorted((home / "opt").glob("flink-python-*.jar"))
    if not dist or not python:
        raise SetupError(f"{home} lacks lib/flink-dist-*.jar or opt/flink-python-*.jar: reinstall apache-flink")
    return dist[-1], python[-1]


def operator_jar() -> Path:
    """The operator's jar, built first if the sources changed since the last build."""
    target = subdir("jars", f"streamscore-operator-{source_digest()}")
    jar = target / JAR_NAME
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SetupError("Maven (`mvn`) is not on PATH: install Maven 3.8+ and Java 17, then retry.")
    dist, python = _flink_jars()
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "operator"
        shutil.copytree(SOURCES, build, ignore=shutil.ignore_patterns("target"))
        command = [
            mvn, "-q", "-B", "-f", str(build / "pom.xml"), "package",
            f"-Dflink.dist.jar={dist}", f"-Dflink.python.jar={python}",
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        built = sorted((build / "target").glob("streamscore-flink-operator-*.jar"))
        if proc.returncode != 0 or not built:
            raise SetupError(
                f"Maven could not build the Flink operator ({SOURCES}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        partial = target / (JAR_NAME + ".part")
        shutil.copyfile(built[0], partial)
        partial.replace(jar)
    return jar
