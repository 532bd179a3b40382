"""Errors of the pipelines layer: start-up problems, with messages that say what to do."""


class PipelineError(Exception):
    """Base class for pipeline start-up and infrastructure errors."""


class SetupError(PipelineError):
    """A prerequisite (Java, Maven, jars, broker) is missing or failed to start."""


class ConfigError(PipelineError):
    """A pipeline configuration or command-line option is invalid."""


class UsageError(ConfigError):
    """The command line itself is wrong: an option's value, or options that do not go together (exit code 2,
    like argparse's own usage errors; every other failure exits 1)."""
