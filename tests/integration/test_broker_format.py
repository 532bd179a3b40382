"""The project broker formats its KRaft storage with any random cluster id, including one starting with "-"
(base64url ids do ~1 time in 64; passed as `-t ID`, argparse took it for an option and `kafka up` failed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.infra import broker
from pipelines.infra.home import home
from pipelines.infra.jars import KAFKA_BROKER, ensure_jars

pytestmark = pytest.mark.integration

PORT = int(os.environ.get("STREAMSCORE_FORMAT_TEST_PORT", "19692"))


def test_a_cluster_id_starting_with_a_dash_formats_and_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_jars(KAFKA_BROKER)
    own_home = tmp_path / "home"
    own_home.mkdir()
    (own_home / "jars").symlink_to(home() / "jars", target_is_directory=True)
    monkeypatch.setenv("STREAMSCORE_HOME", str(own_home))
    monkeypatch.setattr(broker, "new_cluster_id", lambda: "-AbCdEfGhIjKlMnOpQrStU")
    try:
        status = broker.up(PORT)
        assert status.running
        meta = (own_home / "kafka" / str(PORT) / "data" / "meta.properties").read_text()
        assert "cluster.id=-AbCdEfGhIjKlMnOpQrStU" in meta
    finally:
        broker.down(PORT)
