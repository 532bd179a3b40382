"""Fixtures of the state tests: every contract test runs once per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.state.state_testkit import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A `Backend` (memory, rocks) rooted in a fresh temporary directory."""
    root = tmp_path / "backend"
    root.mkdir()
    return BACKENDS[request.param](root)
