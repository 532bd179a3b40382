"""Errors of remote model backends."""

from __future__ import annotations

from models.exceptions import ModelError
from operators.exceptions import OperatorConfigError


class RemoteCallError(ModelError):
    """One call to a model server failed (transport error, HTTP/gRPC status, malformed answer)."""


class ModelUnavailableError(ModelError):
    """A remote backend could not score a batch within its deadline (timeout, error, open circuit breaker, in-flight
    limit): its events fall back to the route's local model or become `model_unavailable` dead letters."""


class RemoteModelMismatchError(OperatorConfigError):
    """The model a server serves is not the registry's version (name, version or sha256 differ)."""
