"""`state` imports nothing of ours, and pyflink only when the Flink adapter is constructed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

STATE = Path(__file__).resolve().parents[3] / "state"


def test_state_imports_no_other_project_package() -> None:
    ours = {"operators", "models", "pipelines"}
    for module in STATE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & ours, f"{module.name} imports {names}"


def test_importing_state_and_the_flink_module_does_not_import_pyflink() -> None:
    code = "import sys, state, state.flink_state; assert 'pyflink' not in sys.modules, 'pyflink imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=STATE.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
