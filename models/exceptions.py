"""Errors of the model area: registry look-ups, manifests and model-file integrity.

These are start-up errors (loading a model) or programmer errors (bad inputs to `ModelHandle.run`);
their messages name the step, what was expected, what was found and what to do.
"""


class ModelError(Exception):
    """Base class of every error raised by `models`."""


class ModelNotFoundError(ModelError, LookupError):
    """The requested model name or version is not in the registry (the message lists what exists)."""


class ModelIntegrityError(ModelError):
    """A model file does not match the sha256 in its manifest (refused before any session is created)."""


class ManifestError(ModelError, ValueError):
    """A manifest is missing, unreadable, or lacks a required field."""


class ModelInputError(ModelError, ValueError):
    """`ModelHandle.run` was called with inputs that do not match the model's declared inputs."""
