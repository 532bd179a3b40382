"""Versioned keyed state: every version of every key records its event time and source coordinates.

Public API: the contract (`VersionedState`, `VersionedStore`, `StateVersion`, `SourceCoordinates`,
`RetentionPolicy`), the codec (`Codec`, `MsgpackCodec`), the backends (`MemoryVersionedStore`,
`RocksVersionedStore`; `FlinkVersionedState` lives in `state.flink_state` so that importing `state`
never imports pyflink) and the errors (`state.exceptions`).
"""

from state.codec import Codec, MsgpackCodec
from state.contract import (
    DEFAULT_RETENTION,
    RetentionPolicy,
    SourceCoordinates,
    StateVersion,
    VersionedState,
    VersionedStore,
)
from state.exceptions import (
    CorruptStateError,
    IncompatibleStateError,
    ReadOnlyStoreError,
    StateDecodeError,
    StateError,
    StateStoreLockedError,
    StoreClosedError,
)
from state.memory import MemoryVersionedStore
from state.rocks import RocksVersionedStore

__all__ = [
    "DEFAULT_RETENTION",
    "Codec",
    "CorruptStateError",
    "IncompatibleStateError",
    "MemoryVersionedStore",
    "MsgpackCodec",
    "ReadOnlyStoreError",
    "RetentionPolicy",
    "RocksVersionedStore",
    "SourceCoordinates",
    "StateDecodeError",
    "StateError",
    "StateStoreLockedError",
    "StateVersion",
    "StoreClosedError",
    "VersionedState",
    "VersionedStore",
]
