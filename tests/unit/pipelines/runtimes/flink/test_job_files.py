"""A cluster job refuses to open on a TaskManager whose interpreter loaded other streamscore code than the client's."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.exceptions import ConfigError
from pipelines.runtimes.flink import job_files


def test_the_fingerprint_covers_the_python_source_only(tmp_path: Path) -> None:
    for package in job_files.PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    before = job_files.fingerprint(tmp_path)
    (tmp_path / "models" / "risk.onnx").write_bytes(b"a new model version is data, not code")
    assert job_files.fingerprint(tmp_path) == before
    (tmp_path / "operators" / "risk.py").write_text("THRESHOLD = 0.5\n")
    assert job_files.fingerprint(tmp_path) != before


def test_other_code_than_the_loaded_one_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_files, "_loaded", None)
    job_files.check_loaded_code(job_files.fingerprint())  # the same checkout: accepted
    with pytest.raises(ConfigError, match="restart the cluster"):
        job_files.check_loaded_code("0" * 16)
