"""Every benchmark script imports: they run by hand or in `make bench*`, never in `make test`, so a name they
import from a sibling that was renamed (as `scale_bench._status_kb` was, breaking three scripts unseen) would
otherwise be found only when someone runs them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
#: Run by the Quix venv's interpreter (quixstreams is not installed in the project's venv).
OWN_VENV = {"__init__", "quix_app"}
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py")) + sorted(
    f"peers.{p.stem}" for p in (BENCHMARKS / "peers").glob("*.py") if p.stem not in OWN_VENV
)


@pytest.fixture
def benchmarks_on_path() -> Iterator[None]:
    sys.path.insert(0, str(BENCHMARKS))  # as the scripts run: `python benchmarks/NAME.py`
    try:
        yield
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.usefixtures("benchmarks_on_path")
def test_the_benchmark_script_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"benchmarks/{name.replace('.', '/')}.py has no docstring saying what it measures"
