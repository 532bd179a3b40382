"""The state changelog: every state version a job writes, as a Kafka record, and its materialisation.

A job run with `--state-changelog TOPIC` publishes `{key, version, event_time, source, value}` (keyed by the
state key, exactly once like its results), and a tombstone (the key, no value) when a sweep removes an expired
key's state. `sync` replays that topic into a `RocksVersionedStore`, so state can be read from outside the job
(`streamscore state get`), as of a version or an event time. A key's versions start again at 1 after it
expired (`operators.core.OperatorBase.is_expired`): version 1 of a key the store holds starts a new lifetime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from pipelines.exceptions import ConfigError
from pipelines.kafka.clients import consume
from state.contract import RetentionPolicy, SourceCoordinates, StateVersion
from state.rocks import RocksVersionedStore


class ChangelogRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One state version as published on the changelog topic."""

    key: str
    version: int
    event_time: int
    source: SourceCoordinates | None
    value: Any


def changelog_record(key: str, version: StateVersion[Any]) -> bytes:
    """The JSON changelog record of `version` of `key`."""
    record = ChangelogRecord(
        key=key, version=version.version, event_time=version.event_time, source=version.source,
        value=version.value,
    )
    return msgspec.json.encode(record)


_DECODER = msgspec.json.Decoder(ChangelogRecord)


class ChangelogGapError(ConfigError):
    """A changelog record is not the next version of its key in the store: they do not belong together."""


def apply_record(store: RocksVersionedStore[Any], key: bytes | None, value: bytes | None,
                 state_type: Any) -> tuple[bool, ChangelogRecord | None]:
    """Apply one changelog record to `store`: (whether it changed the store, the decoded record or None for a
    tombstone). A tombstone forgets the key; version 1 of a key the store holds starts a new lifetime (the
    old one is forgotten); a version the store already has is skipped; the next version is put; any other
    version raises `ChangelogGapError`."""
    if not value:
        if key is None:
            return False, None
        name = key.decode("utf-8")
        found = store.get(name) is not None
        if found:
            store.forget(name)
        return found, None
    record = _DECODER.decode(value)
    latest = store.get(record.key)
    have = latest.version if latest is not None else 0
    if record.version == 1 and have > 0:
        store.forget(record.key)
    elif record.version <= have:
        return False, record
    elif record.version != have + 1:
        raise ChangelogGapError(f"the changelog jumps from version {have} to {record.version} for key {record.key!r}")
    store.put(record.key, msgspec.convert(record.value, type=state_type), event_time=record.event_time,
              source=record.source)
    return True, record


def sync(
    bootstrap: str, topic: str, state_dir: Path, state_type: Any, *, timeout_s: float = 5.0
) -> tuple[int, int]:
    """Apply the changelog `topic` to the store in `state_dir`; returns (records applied, already present).

    Idempotent: the store remembers how far it read each partition of the topic (in the same write as the
    state), and versions it already holds are skipped. A gap (a version that is not the next one for its
    key) means the store and topic disagree, and is refused with a ConfigError.
    """
    applied = skipped = 0
    with RocksVersionedStore(state_dir, retention=RetentionPolicy()) as store:
        positions: dict[int, int] = {}
        for message in consume(bootstrap, topic, timeout_s=timeout_s):
            meta = f"changelog-next/{topic}/{message.partition}"
            if message.partition not in positions:
                positions[message.partition] = int(store.get_meta(meta) or 0)
            if message.offset < positions[message.partition]:
                skipped += 1
                continue
            with store.write_batch():
                try:
                    changed, _ = apply_record(store, message.key, message.value, state_type)
                except ChangelogGapError as exc:
                    raise ConfigError(f"changelog {topic!r}: {exc}; the store in {state_dir} does not match "
                                      "this topic: sync into an empty --state-dir") from None
                store.put_meta(meta, str(message.offset + 1).encode())
            positions[message.partition] = message.offset + 1
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
