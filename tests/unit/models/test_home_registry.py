"""The default model registry lives under $STREAMSCORE_HOME, seeded from the committed models; training or
promoting never writes into the installed package (issue 14, item 4)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from models.registry import REGISTRY_ENV, SHIPPED_ROOT, ModelRegistry


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_the_default_registry_is_seeded_under_streamscore_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path / "home"))
    shipped_before = _tree_digest(SHIPPED_ROOT)

    registry = ModelRegistry()
    assert registry.root == (tmp_path / "home" / "models").resolve()
    shipped = ModelRegistry(SHIPPED_ROOT)
    assert registry.names() == shipped.names() == ["reco", "risk", "risk-large"]
    for name in registry.names():
        assert registry.versions(name) == shipped.versions(name)
        assert registry.current(name) == shipped.current(name)
        assert registry.load(name).sha256 == shipped.load(name).sha256  # verified on load

    other = 1 if registry.current("risk") != 1 else max(registry.versions("risk"))
    registry.promote("risk", other)  # writes the home registry only
    assert ModelRegistry().current("risk") == other  # seeding again keeps what the home registry says
    assert _tree_digest(SHIPPED_ROOT) == shipped_before


def test_a_configured_registry_is_used_as_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.setenv("STREAMSCORE_HOME", str(tmp_path / "home"))
    assert ModelRegistry().root == tmp_path / "elsewhere"
    assert not (tmp_path / "home" / "models").exists()
