"""Errors of the state area: incompatible or corrupt stored state, codec failures, misuse of a store.

These are start-up errors (opening a state directory or a checkpoint written in another format) or
signs that stored bytes are damaged; their messages name the step, what was expected, what was found
and what to do.
"""

from __future__ import annotations


class StateError(Exception):
    """Base class of every error raised by `state`."""


class IncompatibleStateError(StateError):
    """Stored state was written in a format (or with a codec) this code cannot read.

    Raised on open/restore, before any data is touched. `found` and `expected` describe the two formats.
    """

    def __init__(self, where: str, *, found: str, expected: str, remedy: str) -> None:
        self.where = where
        self.found = found
        self.expected = expected
        self.remedy = remedy
        super().__init__(
            f"incompatible state at {where}: found {found}, expected {expected}. {remedy}"
        )


class StateDecodeError(StateError, ValueError):
    """A codec could not decode bytes (bad header, truncated or malformed payload, schema mismatch).

    Stores wrap it into `CorruptStateError`, which adds the key and version.
    """


class CorruptStateError(StateError):
    """The bytes stored for one version of one key cannot be read back.

    `key` is the state key, `version` the version number (None when the per-key header itself is damaged).
    """

    def __init__(self, key: str, version: int | None, detail: str) -> None:
        self.key = key
        self.version = version
        self.detail = detail
        which = f"version {version}" if version is not None else "the key header"
        super().__init__(
            f"corrupt state for key {key!r}, {which}: {detail}. Restore the store from a checkpoint "
            "or delete the key to rebuild its state from the event log"
        )


class StoreClosedError(StateError):
    """An operation was attempted on a store after `close()`."""


class ReadOnlyStoreError(StateError):
    """A write was attempted on a store opened with `read_only=True` (inspection mode)."""


class StateStoreLockedError(StateError):
    """The state directory is already open for writing by another store instance or process."""
