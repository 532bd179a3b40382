"""`state get` says when a key has expired under the config's `state.ttl_hours` (its next event starts cold)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.risk.config import RISK_CONFIG_PATH
from state.contract import RetentionPolicy
from state.rocks import RocksVersionedStore

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
def synced(tmp_path: Path) -> Path:
    folder = tmp_path / "state"
    with RocksVersionedStore(folder, retention=RetentionPolicy()) as store:
        store.key("acct-1").put({"n": 1}, event_time=T0)
        store.key("acct-1").put({"n": 2}, event_time=T0 + 60_000)
    return folder


def _config(tmp_path: Path, ttl: str) -> Path:
    path = tmp_path / "risk.yaml"
    path.write_text(RISK_CONFIG_PATH.read_text() + ttl)
    return path


@pytest.mark.parametrize(("now", "expired"), [("2026-01-01T02:00:00+00:00", False),
                                              ("2026-01-01T02:01:01+00:00", True)])
def test_a_key_idle_past_the_ttl_is_said_to_have_expired(
    synced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], now: str, expired: bool
) -> None:
    config = _config(tmp_path, "  ttl_hours: 2\n")
    assert main(["state", "get", "risk", "acct-1", "--state-dir", str(synced), "--config", str(config),
                 "--now", now]) == 0
    out = capsys.readouterr()
    assert '"version":2' in out.out
    assert ("key 'acct-1' expired" in out.err) is expired
    assert ("next event starts it cold" in out.err) is expired


def test_without_a_ttl_nothing_expires(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["state", "get", "risk", "acct-1", "--state-dir", str(synced), "--now", "2030-01-01T00:00:00"]) == 0
    assert "expired" not in capsys.readouterr().err
