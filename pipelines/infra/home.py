"""Where streamscore keeps downloaded jars, broker data, checkpoints and logs (`STREAMSCORE_HOME`)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = Path.home() / ".streamscore"


def home() -> Path:
    """The streamscore home folder (env `STREAMSCORE_HOME`, default `~/.streamscore`), created if missing."""
    path = Path(os.environ.get("STREAMSCORE_HOME", str(DEFAULT_HOME))).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(*parts: str) -> Path:
    """A folder below the home folder, created if missing."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
