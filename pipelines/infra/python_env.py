"""The environment a Flink JVM that runs streamscore's Python (thread mode, pemja) must inherit."""

from __future__ import annotations

import os
import site
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def flink_python_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with the venv's site-packages and the project on
    PYTHONPATH, and one compute thread per operator for the numeric libraries.

    PyFlink's thread mode runs Python inside the JVM (pemja) with the base interpreter's paths, so a
    virtualenv's site-packages and an editable checkout are invisible unless put on PYTHONPATH before the
    JVM starts (it inherits its parent's environment). Flink's parallelism, not BLAS threads, scales out.
    """
    env = dict(os.environ if base is None else base)
    wanted = [str(PROJECT_ROOT), *site.getsitepackages()]
    current = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*wanted, *current]))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env
