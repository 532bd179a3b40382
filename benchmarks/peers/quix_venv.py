"""The Quix Streams peer's own virtualenv: quixstreams 3.28 pins confluent-kafka < 2.13, the project 2.16.

Created once under `.bench/venv-quix` (pip: quixstreams and the scoring step's needs, through the wheelhouse,
then the project itself without its dependencies, so `operators` and `models` import from this checkout),
reused while its stamp matches the requirements below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from peers.systems import ROOT

VENV = ROOT / ".bench" / "venv-quix"
REQUIREMENTS = ("quixstreams==3.28.*", "numpy>=1.26,<2.2", "onnxruntime>=1.20", "msgspec>=0.19", "pyyaml>=6")
STAMP = VENV / ".bench-installed"
#: Downloaded wheels are kept here and installed offline (pip's HTTP cache stays cold behind proxies that
#: strip caching headers); the Makefile's runtime install uses the same folder.
WHEELHOUSE = Path(os.environ.get("WHEELHOUSE") or Path.home() / ".cache" / "streamscore" / "wheels")


def python() -> Path:
    """The venv's interpreter."""
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create or update the venv if its stamp does not match; returns its interpreter."""
    wanted = "\n".join([*REQUIREMENTS, f"-e {ROOT}"])
    if STAMP.is_file() and STAMP.read_text() == wanted and python().is_file():
        return python()
    if not python().is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python()), "-m", "pip", "install", "--quiet"]
    offline = [*pip, "--no-index", "--find-links", str(WHEELHOUSE)]
    if subprocess.run([*offline, *REQUIREMENTS], check=False, capture_output=True).returncode != 0:
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        download = [str(python()), "-m", "pip", "download", "--quiet", "-d", str(WHEELHOUSE)]
        subprocess.run([*download, *REQUIREMENTS, "setuptools", "wheel"], check=True)
        subprocess.run([*offline, *REQUIREMENTS], check=True)
    subprocess.run([*offline, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted)
    return python()


def versions() -> dict[str, str]:
    """Versions of the packages that matter, as installed in the venv."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps({p: m.version(p) for p in "
        "('quixstreams', 'confluent-kafka', 'onnxruntime', 'numpy', 'rocksdict')}))"
    )
    out = subprocess.run([str(python()), "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))
