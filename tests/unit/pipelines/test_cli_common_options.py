"""CLI basics of issue 14 item 3 (in part): `--bootstrap` accepted before or after any subcommand, `--version`,
and an unreachable broker failing within seconds with the address tried (no traceback, no "0 total")."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import parser
from pipelines.cli.common import DEFAULT_BOOTSTRAP


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "risk", "--bootstrap", "h:1"],
        ["--bootstrap", "h:1", "run", "risk"],
        ["--bootstrap", "other:9", "replay", "risk", "--from-checkpoint", "latest", "--bootstrap", "h:1"],
        ["state", "get", "risk", "k", "--bootstrap", "h:1"],
        ["dlq", "count", "--bootstrap", "h:1"],
        ["models", "list", "--bootstrap", "h:1"],
        ["publish", "risk", "--events", "1", "--bootstrap", "h:1"],
    ],
)
def test_bootstrap_is_accepted_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert parser().parse_args(argv).bootstrap == "h:1"


def test_without_bootstrap_the_default_stays() -> None:
    assert parser().parse_args(["dlq", "count"]).bootstrap == DEFAULT_BOOTSTRAP


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_version() -> None:
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("streamscore 0.")


@pytest.mark.parametrize("argv", [["dlq", "count"], ["publish", "risk", "--events", "3"], ["consume", "t"]])
def test_an_unreachable_broker_fails_with_the_address_tried(argv: list[str]) -> None:
    proc = _cli(*argv, "--bootstrap", "127.0.0.1:9")  # port 9 (discard): nothing listens there
    assert proc.returncode != 0
    assert "cannot reach Kafka at 127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr and "total" not in proc.stdout
