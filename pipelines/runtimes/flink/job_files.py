"""The project's Python code shipped with a job submitted to a session cluster (Flink's `python.files`).

A TaskManager of a cluster has the interpreter and the third-party packages (the image or venv it runs), not this
checkout: `stage()` copies the project's packages (`pipelines`, `operators`, `state`, `models`, with the committed
models of `models/registry`) into a folder that `add_python_file` attaches to the job. Flink uploads it with the
job graph and puts it first on the Python path of every task, so the code that runs is the code that submitted
the job, whatever version a TaskManager has installed (or none).

The models a job loads come from the registry the TaskManagers see: `STREAMSCORE_MODEL_REGISTRY` or their
`$STREAMSCORE_HOME/models`, seeded from the shipped committed models on first use. A version trained or promoted
on the client reaches a remote cluster through a registry on shared storage (that variable), not with the job.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

PACKAGES = ("pipelines", "operators", "state", "models")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache")


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stage(into: Path, root: Path = PROJECT_ROOT) -> Path:
    """A folder under `into` holding a copy of the project's packages (one per content fingerprint, so an
    unchanged checkout is staged once); the folder to attach with `add_python_file`."""
    target = into / f"streamscore-{_fingerprint(root)}"
    if (target / ".complete").exists():
        return target
    staging = into / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(root / package, staging / package, ignore=_IGNORED)
    (staging / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
