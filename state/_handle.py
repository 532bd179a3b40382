"""The per-key handle every store returns from `key()` (internal module)."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from state.contract import SourceCoordinates, StateVersion

T = TypeVar("T")


class KeyAddressedStore(Protocol[T]):
    """The key-first operations a store implements; `KeyState` binds them to one key."""

    def get(self, key: str) -> StateVersion[T] | None: ...

    def put(self, key: str, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int: ...

    def as_of(self, key: str, version: int) -> StateVersion[T] | None: ...

    def as_of_time(self, key: str, event_time: int) -> StateVersion[T] | None: ...

    def history(self, key: str, limit: int) -> list[StateVersion[T]]: ...

    def forget(self, key: str) -> None: ...

    def side(self, key: str, name: str) -> bytes | None: ...

    def put_side(self, key: str, name: str, value: bytes | None, *, inline: bool = False) -> None: ...


class KeyState(Generic[T]):
    """`VersionedState` of one key of a store (a cheap handle holding the store and the key)."""

    __slots__ = ("_key", "_store")

    def __init__(self, store: KeyAddressedStore[T], key: str) -> None:
        self._store = store
        self._key = key

    @property
    def key(self) -> str:
        """The state key this handle reads and writes."""
        return self._key

    def get(self) -> StateVersion[T] | None:
        """The latest version, or None if the key has no state."""
        return self._store.get(self._key)

    def put(self, value: T, *, event_time: int, source: SourceCoordinates | None = None) -> int:
        """Store `value` as a new version produced by an event at `event_time`; return its version."""
        return self._store.put(self._key, value, event_time=event_time, source=source)

    def as_of(self, version: int) -> StateVersion[T] | None:
        """The state exactly at `version`, or None if that version does not exist or was pruned."""
        return self._store.as_of(self._key, version)

    def as_of_time(self, event_time: int) -> StateVersion[T] | None:
        """The highest retained version whose event time is <= `event_time`, or None."""
        return self._store.as_of_time(self._key, event_time)

    def history(self, limit: int) -> list[StateVersion[T]]:
        """Up to `limit` retained versions, newest first."""
        return self._store.history(self._key, limit)

    def forget(self) -> None:
        """Drop every version, the version counter and the side entries: the next put is version 1 (an expired key)."""
        self._store.forget(self._key)

    def side(self, name: str) -> bytes | None:
        """The key's side entry `name`, or None."""
        return self._store.side(self._key, name)

    def put_side(self, name: str, value: bytes | None, *, inline: bool = False) -> None:
        """Set the key's side entry `name` (None removes it); `inline` keeps a small entry in the head."""
        self._store.put_side(self._key, name, value, inline=inline)

    def __repr__(self) -> str:
        return f"KeyState({self._key!r} of {self._store!r})"
