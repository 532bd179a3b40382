"""`streamscore`: the command line (broker, publishing, jobs, consuming, state, models, savepoints, backtests,
demo). One module per command group; what they share is in `pipelines.cli.common`."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys

from pipelines.cli.backtest import add_backtest_command
from pipelines.cli.broker import add_kafka_command
from pipelines.cli.cluster import add_cluster_command
from pipelines.cli.common import DEFAULT_BOOTSTRAP, EXIT_ERROR
from pipelines.cli.data import add_data_commands
from pipelines.cli.demo import add_demo_command
from pipelines.cli.jobs import add_job_commands
from pipelines.cli.models import add_models_commands
from pipelines.cli.savepoint import add_savepoint_commands
from pipelines.cli.state import add_state_commands
from pipelines.exceptions import PipelineError


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `streamscore` command."""
    root = argparse.ArgumentParser(prog="streamscore", description=__doc__)
    root.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help=BOOTSTRAP_HELP)
    root.add_argument("--version", action="version", version=f"streamscore {_version()}")
    commands = root.add_subparsers(dest="command", required=True)
    add_kafka_command(commands)
    add_cluster_command(commands)
    add_data_commands(commands)
    add_job_commands(commands)
    add_state_commands(commands)
    add_demo_command(commands)
    add_models_commands(commands)
    add_savepoint_commands(commands)
    add_backtest_command(commands)
    _accept_common_options(root)
    return root


BOOTSTRAP_HELP = f"Kafka bootstrap servers (env STREAMSCORE_BOOTSTRAP; default {DEFAULT_BOOTSTRAP})"


def _version() -> str:
    try:
        return importlib.metadata.version("streamscore")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown (not installed)"


def _accept_common_options(parser: argparse.ArgumentParser) -> None:
    """Accept `--bootstrap` after any (sub)command too: `streamscore run risk --bootstrap X` as well as
    `streamscore --bootstrap X run risk` (the later one wins; SUPPRESS keeps the root's value otherwise)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any("--bootstrap" in a.option_strings for a in sub._actions):
                    sub.add_argument("--bootstrap", default=argparse.SUPPRESS, help=BOOTSTRAP_HELP)
                _accept_common_options(sub)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamscore` console script."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PipelineError as exc:
        print(f"streamscore: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
