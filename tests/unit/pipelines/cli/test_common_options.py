"""The CLI's one error boundary (issue 14 item 3): `--bootstrap` accepted before or after any subcommand,
`--version`, help text on every option, the documented exit codes (0 ok, 1 failure, 2 usage, 130 interrupted)
and no traceback for an expected failure (an unreachable broker fails within seconds with the address tried,
a missing model or file says which)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import expected_failure, main, parser
from pipelines.cli.common import DEFAULT_BOOTSTRAP


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "risk", "--bootstrap", "h:1"],
        ["--bootstrap", "h:1", "run", "risk"],
        ["--bootstrap", "other:9", "replay", "risk", "--from-checkpoint", "latest", "--bootstrap", "h:1"],
        ["state", "get", "risk", "k", "--bootstrap", "h:1"],
        ["dlq", "count", "--pipeline", "risk", "--bootstrap", "h:1"],
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


@pytest.mark.parametrize("argv", [["dlq", "count", "--pipeline", "risk"], ["publish", "risk", "--events", "3"],
                                  ["consume", "t"]])
def test_an_unreachable_broker_fails_with_the_address_tried(argv: list[str]) -> None:
    proc = _cli(*argv, "--bootstrap", "127.0.0.1:9")  # port 9 (discard): nothing listens there
    assert proc.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr and "total" not in proc.stdout


def test_every_option_and_argument_has_help_text() -> None:
    missing = []

    def walk(command: argparse.ArgumentParser, path: str) -> None:
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser(), "streamscore")
    assert missing == []


def test_usage_errors_exit_2_failures_exit_1_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    with pytest.raises(SystemExit) as usage:  # argparse's own usage error
        main(["run", "risk", "--no-such-option"])
    assert usage.value.code == 2
    assert main(["run", "risk", "--parallelism", "0"]) == 2  # a value argparse cannot check
    assert "--parallelism must be between 1 and" in capsys.readouterr().err
    assert main(["score", "risk", "--model", "risk@99", "--file", str(events)]) == 1
    err = capsys.readouterr().err
    assert "model risk@99 not found" in err and "Traceback" not in err
    assert main(["score", "risk", "--file", str(tmp_path / "missing.jsonl")]) == 1
    assert f"No such file or directory: {tmp_path / 'missing.jsonl'}" in capsys.readouterr().err


def test_an_interrupt_exits_130_and_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.cli import data

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_cmd_consume", interrupted)
    assert main(["consume", "t"]) == 130
    assert expected_failure(ValueError("a bug")) is None  # re-raised by main: the traceback is the report


def test_dlq_asks_whose_dead_letters_rather_than_guessing() -> None:
    proc = _cli("dlq", "count", "--bootstrap", "127.0.0.1:9")
    assert proc.returncode == 2 and "dlq: give --pipeline (reco, risk) or --topic" in proc.stderr
