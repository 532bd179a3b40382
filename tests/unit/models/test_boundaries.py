"""Import rules of `models`: runtime modules need numpy + onnxruntime only; no operators/pipelines imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[3] / "models"
RUNTIME_MODULES = (
    "models.registry",
    "models.handle",
    "models.exceptions",
    "models.synthetic",
    "models.evaluation",
    "models.rules",
    "models.session_replay",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(MODELS.rglob("*.py")), ids=lambda p: str(p.relative_to(MODELS)))
def test_models_never_import_operators_or_pipelines(path: Path) -> None:
    assert not _imports(path) & {"operators", "pipelines", "state"}
    if "training" not in path.relative_to(MODELS).parts:
        assert "torch" not in _imports(path), f"{path} imports torch outside models/training"


def test_runtime_modules_load_without_torch() -> None:
    code = (
        "import sys\n" + "".join(f"import {m}\n" for m in RUNTIME_MODULES) + "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=MODELS.parent
    )
    assert out.stdout.strip() == "False"
