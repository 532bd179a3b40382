"""The Flink JVM's class-data-sharing archive (`pipelines.infra.jvm_archive`): mapped only when one was built for
this JVM and class path, never over a CDS option the user chose, and named after what it is valid for."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.infra import jvm_archive


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(jvm_archive.ARCHIVE_ENV, raising=False)
    return tmp_path / "home"


def _built(home: Path) -> Path:
    path = jvm_archive.archive_path()
    assert path is not None and path.parent == home / "jvm"
    path.write_bytes(b"an archive")
    path.with_name(path.name + ".size").write_text(str(len(b"an archive")))
    return path


def test_without_an_archive_the_jvm_arguments_are_left_as_they_are(home: Path) -> None:
    assert jvm_archive.with_archive("-Xmx1g") == "-Xmx1g"


def test_a_built_archive_is_mapped_quietly(home: Path) -> None:
    path = _built(home)
    args = jvm_archive.with_archive("-Xmx1g").split()
    assert args[0] == "-Xmx1g" and f"-XX:SharedArchiveFile={path}" in args
    assert set(jvm_archive.QUIET) <= set(args)  # a JVM that cannot map it starts without it, saying nothing


@pytest.mark.parametrize("user_choice", ["-Xshare:off", "-XX:SharedArchiveFile=/opt/mine.jsa",
                                         "-XX:ArchiveClassesAtExit=/tmp/new.jsa"])
def test_a_cds_option_of_the_user_is_kept_and_no_archive_added(home: Path, user_choice: str) -> None:
    _built(home)
    assert jvm_archive.with_archive(user_choice) == user_choice


def test_the_environment_variable_turns_it_off(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _built(home)
    monkeypatch.setenv(jvm_archive.ARCHIVE_ENV, "0")
    assert jvm_archive.with_archive("") == ""


def test_another_class_path_finds_no_archive_of_its_name(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _built(home)
    lib = tmp_path / "lib"  # e.g. `--metrics-port`'s lib folder with the Prometheus reporter
    lib.mkdir()
    (lib / "flink-dist.jar").write_bytes(b"jar")
    monkeypatch.setenv("FLINK_LIB_DIR", str(lib))
    first = jvm_archive.archive_path()
    assert first is not None and first != built
    assert jvm_archive.with_archive("-Xmx1g") == "-Xmx1g"
    (lib / "flink-metrics-prometheus.jar").write_bytes(b"reporter")
    assert jvm_archive.archive_path() != first


def test_no_java_means_no_archive(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jvm_archive, "_java", lambda: None)
    assert jvm_archive.archive_path() is None and jvm_archive.with_archive("-Xmx1g") == "-Xmx1g"
    assert jvm_archive.build() is None


def test_a_cut_archive_is_not_passed_to_the_jvm(home: Path) -> None:
    path = _built(home)
    path.write_bytes(b"an arch")  # cut short (a JVM mapping a cut archive can crash)
    assert not jvm_archive.usable(path) and jvm_archive.with_archive("-Xmx1g") == "-Xmx1g"
    path.with_name(path.name + ".size").unlink()  # or written by an earlier version, without its size
    path.write_bytes(b"an archive")
    assert jvm_archive.with_archive("-Xmx1g") == "-Xmx1g"
