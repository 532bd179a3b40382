"""Every test reads the committed models: the registry they see by default is a session copy of `models/registry`.

Without it a test process would read `$STREAMSCORE_HOME/models`, a home registry seeded once from whichever
models were committed when it was first used (a machine that ran the suite before a retraining keeps the old
current versions) and shared with whatever else uses that home. Tests that need their own registry still set
`STREAMSCORE_MODEL_REGISTRY` themselves (`private_registry`); subprocesses inherit the variable.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.registry import REGISTRY_ENV, SHIPPED_ROOT


@pytest.fixture(scope="session", autouse=True)
def committed_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the committed registry, made the default one for the whole session."""
    root = tmp_path_factory.mktemp("committed-models") / "registry"
    shutil.copytree(SHIPPED_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REGISTRY_ENV, str(root))
        yield root
