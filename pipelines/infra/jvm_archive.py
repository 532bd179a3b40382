"""The Flink JVM's class-data-sharing archive: a local run's JVM maps the classes an earlier run loaded.

A local run's JVM (PyFlink's gateway, which hosts the mini-cluster) loads and verifies some 20,000 classes from
Flink's jars before the job's first record. Java 17 can dump them at exit into a dynamic CDS archive
(`-XX:ArchiveClassesAtExit`) and map that archive at the next start (`-XX:SharedArchiveFile`). `make` builds one
(`python -m pipelines.infra.jvm_archive`: a short datagen job, `pipelines.runtimes.flink.archive_training`, ~30 s,
no broker) into `<home>/jvm/`, and every local run then starts with it (`with_archive`). Measured on the 2-core
machine, 2026-12-07, a 200-event bounded risk job from the environment's creation to its end, alternating: 20.1 and
22.6 s without the archive, 18.3 and 18.7 s with it.

The archive is only valid for the JVM and the class path that wrote it, so its file name carries a fingerprint of
both (the java binary, PyFlink's version, the jars of its `lib` folder): a JDK upgrade, another PyFlink or a `lib`
with the Prometheus reporter (`--metrics-port`) finds no archive of its name and starts as before. A JVM that
cannot map an archive anyway starts without it, silently (`-Xlog:cds=off`). `STREAMSCORE_JVM_ARCHIVE=0` turns it
off; a `JVM_ARGS` that already names a CDS option is left as it is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.infra.home import subdir

#: Set to "0" to start every local run without the archive.
ARCHIVE_ENV = "STREAMSCORE_JVM_ARCHIVE"
#: JVM options of class-data sharing: when `JVM_ARGS` holds one, it is the user's choice and is kept as it is.
CDS_OPTIONS = ("-XX:SharedArchiveFile=", "-XX:ArchiveClassesAtExit=", "-Xshare:")
#: The module whose run the archive is written from (a local run's configuration on a short datagen job).
TRAINING_MODULE = "pipelines.runtimes.flink.archive_training"
#: A JVM that cannot map the archive (another class path, a damaged file) starts without it and says nothing.
QUIET = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def _java() -> Path | None:
    java_home = os.environ.get("JAVA_HOME")
    found = Path(java_home) / "bin" / "java" if java_home else None
    if found is None or not found.exists():
        which = shutil.which("java")
        found = Path(which) if which else None
    return found.resolve() if found is not None else None


def _lib_dir() -> Path:
    """The folder whose jars PyFlink's gateway puts on its class path (env `FLINK_LIB_DIR`, else the package's)."""
    configured = os.environ.get("FLINK_LIB_DIR")
    if configured:
        return Path(configured)
    import pyflink

    return Path(pyflink.__file__).resolve().parent / "lib"


def fingerprint() -> str | None:
    """A digest of what an archive is only valid for: the java binary, PyFlink's version and its `lib` jars
    (names, sizes, times); None when there is no java on the PATH or JAVA_HOME."""
    java = _java()
    if java is None:
        return None
    digest = hashlib.sha256()
    stat = java.stat()
    digest.update(f"{java}|{stat.st_size}|{stat.st_mtime_ns}|".encode())
    digest.update(importlib.metadata.version("apache-flink").encode())
    lib = _lib_dir()
    for jar in sorted(lib.glob("*.jar")):
        jar_stat = jar.stat()
        digest.update(f"|{jar}|{jar_stat.st_size}|{jar_stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def archive_path() -> Path | None:
    """Where the archive for this JVM and class path is (or would be) kept; None without a java."""
    tag = fingerprint()
    return None if tag is None else subdir("jvm") / f"flink-{tag}.jsa"


def _size_file(path: Path) -> Path:
    return path.with_name(path.name + ".size")


def usable(path: Path | None) -> bool:
    """Whether `path` is a whole archive: its size is the one `build` recorded next to it. A JVM that maps a cut
    archive can crash (seen: SIGBUS while relocating it, Java 17), so a file of another size is never passed on."""
    if path is None:
        return False
    try:
        return path.stat().st_size == int(_size_file(path).read_text())
    except (OSError, ValueError):
        return False


def with_archive(jvm_args: str) -> str:
    """`JVM_ARGS` with the archive mapped, when a whole one was built for this JVM and class path (else
    unchanged)."""
    if os.environ.get(ARCHIVE_ENV, "1") == "0" or any(option in jvm_args for option in CDS_OPTIONS):
        return jvm_args
    path = archive_path()
    if path is None or not usable(path):
        return jvm_args
    return " ".join([jvm_args, f"-XX:SharedArchiveFile={path}", *QUIET]).strip()


def build(timeout_s: float = 300.0) -> Path | None:
    """Write this JVM's archive (replacing an older one of the same name) and return it; None (and a message) when
    there is no java or the training run fails: local runs then start without one, as before."""
    path = archive_path()
    if path is None:
        print("jvm archive: no java found; local runs start without a class-data-sharing archive")
        return None
    partial = path.with_suffix(f".{os.getpid()}.partial")
    env = dict(os.environ)
    env["JVM_ARGS"] = f"{env.get('JVM_ARGS', '')} -XX:ArchiveClassesAtExit={partial} {' '.join(QUIET)}".strip()
    env[ARCHIVE_ENV] = "0"
    try:
        run = subprocess.run([sys.executable, "-m", TRAINING_MODULE], env=env,
                             capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        run = None
    if run is None or run.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        detail = "timed out" if run is None else (run.stderr or run.stdout)[-1500:]
        print(f"jvm archive: not built ({detail.strip()}); local runs start without one")
        return None
    _size_file(path).unlink(missing_ok=True)
    partial.replace(path)
    _size_file(path).write_text(str(path.stat().st_size))
    for stale in path.parent.glob("flink-*.jsa*"):  # archives of an earlier JDK, PyFlink or lib
        if stale not in (path, _size_file(path)):
            stale.unlink(missing_ok=True)
    return path


def ensure() -> Path | None:
    """The archive for this JVM and class path, built first when there is none yet."""
    path = archive_path()
    if usable(path):
        return path
    return build()


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.infra.jvm_archive [--rebuild]` (make's set-up)."""
    args = sys.argv[1:] if argv is None else argv
    path = build() if args == ["--rebuild"] else ensure()
    if path is not None:
        print(f"jvm archive: {path} ({path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
