"""The class-data-sharing archive `make` builds is one the gateway JVM of a local run can map.

`-Xshare:on` makes a JVM that cannot map its archive (another class path or JVM) stop with an error instead of
starting without it, so a local PyFlink job run with it proves the archive fits PyFlink's gateway. No broker: the job
is the archive's own datagen run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipelines.infra import jvm_archive

pytestmark = pytest.mark.integration


def test_a_local_flink_job_maps_the_built_archive() -> None:
    archive = jvm_archive.ensure()
    assert archive is not None and jvm_archive.usable(archive) and archive.stat().st_size > 10_000_000, archive
    env = dict(os.environ, JVM_ARGS=f"-XX:SharedArchiveFile={archive} -Xshare:on", **{jvm_archive.ARCHIVE_ENV: "0"})
    mapped = subprocess.run([sys.executable, "-m", jvm_archive.TRAINING_MODULE], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert mapped.returncode == 0, (mapped.stdout[-2000:], mapped.stderr[-3000:])
