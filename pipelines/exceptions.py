"""Errors of the pipelines layer: start-up problems, with messages that say what to do."""


class PipelineError(Exception):
    """Base class for pipeline start-up and infrastructure errors."""


class SetupError(PipelineError):
    """A prerequisite (Java, Maven, jars, broker) is missing or failed to start."""


class ConfigError(PipelineError):
    """A pipeline configuration or command-line option is invalid."""
