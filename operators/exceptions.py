"""Errors raised by operators at start-up or on programmer error (bad records become dead letters instead)."""


class OperatorError(Exception):
    """Base class for operator errors."""


class OperatorConfigError(OperatorError):
    """An operator was configured with values it cannot work with."""
