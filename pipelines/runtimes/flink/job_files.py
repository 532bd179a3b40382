"""Which streamscore code a session cluster's TaskManagers run, and a refusal when it is not the client's.

PyFlink's thread mode runs every Python operator of a TaskManager in one embedded CPython interpreter that lives
as long as the TaskManager: a module imported by one job stays in `sys.modules` for the next. So shipping the
project's code with each job (`python.files`) does not work there: the second job on a TaskManager imports
nothing and runs the first job's modules, from a folder Flink deleted when that job ended (seen here: the
second job failed to read `pipelines/risk/risk.yaml` under the first job's `flink-dist-cache` folder). The code
is therefore the TaskManagers' installed streamscore (this checkout for `streamscore cluster up`, the package
baked into the image for compose and Kubernetes), and each job carries the fingerprint of the client's code:
the operator refuses to open when the code its interpreter loaded differs (e.g. the checkout was edited after
the cluster started), instead of silently scoring with other code. Models come from the registry the
TaskManagers see (`STREAMSCORE_MODEL_REGISTRY`, or their `$STREAMSCORE_HOME/models`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipelines.exceptions import ConfigError

PACKAGES = ("pipelines", "operators", "state", "models")
PROJECT_ROOT = Path(__file__).resolve().parents[3]
#: The fingerprint of the code this interpreter loaded, taken the first time it was asked for.
_loaded: str | None = None


def fingerprint(root: Path = PROJECT_ROOT) -> str:
    """A digest of the project's Python source under `root` (models and configs are data: not included)."""
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def check_loaded_code(expected: str) -> None:
    """`ConfigError` unless the code this interpreter loaded is the client's (`expected`: its fingerprint)."""
    global _loaded
    if _loaded is None:
        _loaded = fingerprint()
    if _loaded != expected:
        raise ConfigError(
            f"this TaskManager runs streamscore code {_loaded} (as its interpreter first loaded it from "
            f"{PROJECT_ROOT}), the job was submitted from code {expected}: thread mode keeps a TaskManager's "
            "modules loaded for its lifetime, so restart the cluster (`streamscore cluster down` and `up`) or "
            "install the client's version on it"
        )
