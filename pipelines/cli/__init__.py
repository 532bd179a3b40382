"""`streamscore`: the command line (broker, publishing, jobs, consuming, state, models, savepoints, backtests,
demo). One module per command group; what they share is in `pipelines.cli.common`.

One error boundary for every command (`main`): an expected failure (a bad config, an unreachable broker or
cluster, a missing or tampered model, a missing file, incompatible state) prints one `streamscore: error: ...`
line saying what to do, never a traceback. Exit codes: 0 done, 1 failed, 2 usage (argparse's errors and
`UsageError`: an option's value or a combination of options), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import sys
from pathlib import Path

from pipelines.cli.backtest import add_backtest_command
from pipelines.cli.broker import add_kafka_command
from pipelines.cli.cluster import add_cluster_command
from pipelines.cli.common import DEFAULT_BOOTSTRAP, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from pipelines.cli.data import add_data_commands
from pipelines.cli.dataset import add_dataset_command
from pipelines.cli.demo import add_demo_command
from pipelines.cli.drift import add_drift_command
from pipelines.cli.jobs import add_job_commands
from pipelines.cli.loop import add_loop_command
from pipelines.cli.models import add_models_commands
from pipelines.cli.savepoint import add_savepoint_commands
from pipelines.cli.state import add_state_commands
from pipelines.exceptions import PipelineError, UsageError


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `streamscore` command."""
    root = argparse.ArgumentParser(prog="streamscore", description=__doc__)
    root.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, help=BOOTSTRAP_HELP)
    root.add_argument("--kafka-config", metavar="FILE", default=None, help=KAFKA_CONFIG_HELP)
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
    add_dataset_command(commands)
    add_drift_command(commands)
    add_loop_command(commands)
    _accept_common_options(root)
    return root


BOOTSTRAP_HELP = f"Kafka bootstrap servers (env STREAMSCORE_BOOTSTRAP; default {DEFAULT_BOOTSTRAP})"
KAFKA_CONFIG_HELP = (
    "Kafka client security for every client of the command and its jobs: a librdkafka-style properties file "
    "(security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location, ...; env "
    "STREAMSCORE_KAFKA_CONFIG; each key also as env STREAMSCORE_KAFKA_<KEY>, e.g. STREAMSCORE_KAFKA_SASL_PASSWORD)"
)
#: The options every (sub)command accepts, with their help (given after a subcommand, the later one wins).
_COMMON_OPTIONS = {"--bootstrap": BOOTSTRAP_HELP, "--kafka-config": KAFKA_CONFIG_HELP}


def _version() -> str:
    try:
        return importlib.metadata.version("streamscore")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown (not installed)"


def _accept_common_options(parser: argparse.ArgumentParser) -> None:
    """Accept `--bootstrap` and `--kafka-config` after any (sub)command too: `streamscore run risk --bootstrap X`
    as well as `streamscore --bootstrap X run risk` (the later one wins; SUPPRESS keeps the root's value
    otherwise)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                for option, help_text in _COMMON_OPTIONS.items():
                    if not any(option in a.option_strings for a in sub._actions):
                        sub.add_argument(option, default=argparse.SUPPRESS, help=help_text,
                                         **({"metavar": "FILE"} if option == "--kafka-config" else {}))
                _accept_common_options(sub)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `streamscore` console script."""
    args = parser().parse_args(argv)  # a usage error exits 2 here
    try:
        _use_kafka_security(args)
        return int(args.func(args))
    except UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        message = expected_failure(exc)
        if message is None:
            raise  # a bug: the traceback is what to report
        return _error(message, EXIT_FAILURE)


def _use_kafka_security(args: argparse.Namespace) -> None:
    """Make `--kafka-config` the settings of every Kafka client of this process and of the processes it starts
    (it sets env STREAMSCORE_KAFKA_CONFIG); a bad file or env setting fails here, before anything starts."""
    from pipelines.kafka import security

    if args.kafka_config is not None:
        security.use_config_file(Path(args.kafka_config))
    security.active()


def _error(message: str, code: int) -> int:
    from pipelines.kafka import security

    # No secret in an error message, whatever reported it (when the settings themselves failed to load, their
    # message names no secret).
    with contextlib.suppress(PipelineError):
        message = security.redact(message)
    print(f"streamscore: error: {message}", file=sys.stderr)
    return code


def expected_failure(exc: BaseException) -> str | None:
    """The one-line message of a failure a user can act on (None: an unexpected error, i.e. a bug)."""
    from confluent_kafka import KafkaException

    from models.exceptions import ModelError
    from operators.exceptions import OperatorError
    from state.exceptions import StateError

    if isinstance(exc, PipelineError | ModelError | OperatorError | StateError):
        return str(exc)
    if isinstance(exc, KafkaException):
        return f"Kafka: {exc.args[0] if exc.args else exc}"
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, ModuleNotFoundError) and exc.name == "torch":
        return ("training needs torch, which the runtime install (`make demo`) leaves out: "
                "`pip install -e '.[train]'` in the venv, or `make setup`")
    return None


if __name__ == "__main__":
    sys.exit(main())
