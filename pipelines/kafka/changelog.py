"""The state changelog: every state version (and side entry) a job writes, as Kafka records, and its
materialisation.

A job run with `--state-changelog TOPIC` publishes, keyed by the state key and exactly once like its results,
one record per state version it writes, one per side entry a batch (faust) or element (Flink) changed, and a
tombstone (no value) when a sweep removes an expired key's state. The values' bytes are specified in
`pipelines.kafka.changelog_format` (binary since 2026-12-06; the JSON records of before are still read).
`sync` replays the topic into a `RocksVersionedStore`, so state can be read from outside the job (`streamscore
state get`), as of a version or an event time. A key's versions start again at 1 after it expired
(`operators.core.OperatorBase.is_expired`): version 1 of a key the store holds starts a new lifetime.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from pipelines.exceptions import ConfigError
from pipelines.kafka.changelog_format import (
    SIDE_FORMAT,
    ChangelogFormatError,
    JsonVersion,
    SideChange,
    decode_value,
    side_value,
    version_value,
)
from pipelines.kafka.clients import consume
from state.codec import MsgpackCodec
from state.contract import RetentionPolicy, SourceCoordinates, StateVersion
from state.layout import Record
from state.rocks import RocksVersionedStore

__all__ = ["ChangelogGapError", "ChangelogVersion", "apply_record", "changelog_record", "read", "side_value", "sync",
           "version_value", "versions_of"]


class ChangelogGapError(ConfigError):
    """A changelog record is not the next version of its key in the store: they do not belong together."""


class ChangelogVersion(NamedTuple):
    """One state version read from a changelog, whatever its format (`value` as plain Python values)."""

    key: str
    version: int
    event_time: int
    source: SourceCoordinates | None
    value: Any


_PLAIN = MsgpackCodec()


def _version_of(key: bytes | None, decoded: Record | JsonVersion) -> ChangelogVersion:
    if isinstance(decoded, JsonVersion):
        return ChangelogVersion(decoded.key, decoded.version, decoded.event_time, decoded.source, decoded.value)
    if key is None:
        raise ChangelogFormatError("a binary changelog version without a key")
    return ChangelogVersion(key.decode("utf-8"), decoded.version, decoded.event_time, decoded.source,
                            _PLAIN.decode(decoded.payload))


def versions_of(records: Iterator[tuple[bytes | None, bytes | None]]) -> Iterator[ChangelogVersion]:
    """The state versions among changelog `(key, value)` records (side entries and tombstones skipped)."""
    for key, value in records:
        if not value:
            continue
        decoded = decode_value(value)
        if not isinstance(decoded, SideChange):
            yield _version_of(key, decoded)


def changelog_record(key: str, version: StateVersion[Any]) -> bytes:
    """The JSON changelog record of `version` of `key`: the format jobs wrote before 2026-12-06, still read everywhere
    (no runtime writes it any more; kept to produce old-format changelogs, e.g. in tests of their readers)."""
    return msgspec.json.encode(JsonVersion(
        key=key, version=version.version, event_time=version.event_time, source=version.source, value=version.value,
    ))


def apply_record(store: RocksVersionedStore[Any], key: bytes | None, value: bytes | None,
                 state_type: Any) -> tuple[bool, SourceCoordinates | None]:
    """Apply one changelog record to `store`: (whether it changed the store, the source of the version it
    carried, if any). A tombstone forgets the key; a side entry is set; version 1 of a key the store holds
    starts a new lifetime (the old one is forgotten); a version the store already has is skipped; the next
    version is put; any other version raises `ChangelogGapError`. A binary version's value bytes are stored
    as they are (the store's codec must be msgpack, as every job's is)."""
    if not value:
        if key is None:
            return False, None
        name = key.decode("utf-8")
        found = store.get(name) is not None
        if found:
            store.forget(name)
        return found, None
    decoded = decode_value(value)
    if isinstance(decoded, SideChange):
        if key is None:
            raise ChangelogFormatError("a changelog side entry without a key")
        store.put_side(key.decode("utf-8"), decoded.name, decoded.value, inline=decoded.inline)
        return True, None
    version = _version_of(key, decoded) if isinstance(decoded, JsonVersion) else None
    name = version.key if version is not None else (key or b"").decode("utf-8")
    number = decoded.version
    latest = store.get(name)
    have = latest.version if latest is not None else 0
    if number == 1 and have > 0:
        store.forget(name)
    elif number <= have:
        return False, decoded.source
    elif number != have + 1:
        raise ChangelogGapError(f"the changelog jumps from version {have} to {number} for key {name!r}")
    if version is not None:  # JSON (before 2026-12-06): its value converted to the state type
        store.put(name, msgspec.convert(version.value, type=state_type), event_time=version.event_time,
                  source=version.source)
    else:
        assert isinstance(decoded, Record)
        store.put_encoded(name, decoded.payload, event_time=decoded.event_time, source=decoded.source)
    return True, decoded.source


def sync(
    bootstrap: str, topic: str, state_dir: Path, state_type: Any, *, timeout_s: float = 5.0
) -> tuple[int, int]:
    """Apply the changelog `topic` to the store in `state_dir`; returns (versions and tombstones applied, already
    present). Side-entry records are applied too and not counted.

    Idempotent: the store remembers how far it read each partition of the topic (in the same write as the
    state), and versions it already holds are skipped. A gap (a version that is not the next one for its
    key) means the store and topic disagree, and is refused with a ConfigError.
    """
    applied = skipped = 0
    with RocksVersionedStore(state_dir, retention=RetentionPolicy()) as store:
        positions: dict[int, int] = {}
        for message in consume(bootstrap, topic, timeout_s=timeout_s):
            meta = f"changelog-next/{topic}/{message.partition}"
            side = bool(message.value) and message.value[0] == SIDE_FORMAT
            if message.partition not in positions:
                positions[message.partition] = int(store.get_meta(meta) or 0)
            if message.offset < positions[message.partition]:
                skipped += not side
                continue
            with store.write_batch():
                try:
                    changed, _ = apply_record(store, message.key, message.value, state_type)
                except ChangelogGapError as exc:
                    raise ConfigError(f"changelog {topic!r}: {exc}; the store in {state_dir} does not match "
                                      "this topic: sync into an empty --state-dir") from None
                except ChangelogFormatError as exc:
                    raise ConfigError(f"changelog {topic!r} partition {message.partition} offset {message.offset}: "
                                      f"{exc}; is it a streamscore state changelog?") from None
                store.put_meta(meta, str(message.offset + 1).encode())
            positions[message.partition] = message.offset + 1
            if not side:
                applied += changed
                skipped += not changed
    return applied, skipped


def read(
    state_dir: Path, key: str, *, version: int | None = None, as_of_ms: int | None = None, history: int | None = None
) -> list[StateVersion[Any]]:
    """State versions of `key` from a synced store: one version, the version as of a time, history, or latest."""
    if not state_dir.exists():
        raise ConfigError(f"no synced state in {state_dir}: run `streamscore state sync` first")
    with RocksVersionedStore(state_dir, read_only=True, retention=RetentionPolicy()) as store:
        if version is not None:
            found = store.as_of(key, version)
        elif as_of_ms is not None:
            found = store.as_of_time(key, as_of_ms)
        elif history is not None:
            return store.history(key, history)
        else:
            found = store.get(key)
    return [found] if found is not None else []
