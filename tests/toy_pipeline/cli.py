"""`streamscore` as a subprocess that knows the toy pipeline (`STREAMSCORE_PIPELINES=tests.toy_pipeline`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipelines.registry import PLUGINS_ENV

ROOT = Path(__file__).resolve().parents[2]


def toy_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `streamscore ARGS` with the toy pipeline registered; fail loudly, with its output, unless it exits 0."""
    env = os.environ | {PLUGINS_ENV: "tests.toy_pipeline"}
    proc = subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, cwd=ROOT)
    assert proc.returncode == 0, f"streamscore {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
