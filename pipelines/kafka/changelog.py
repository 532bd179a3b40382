"""The state changelog: every state version a job writes, as a Kafka record, and its materialisation.

A job run with `--state-changelog TOPIC` publishes `{key, version, event_time, source, value}` (keyed by the
state key, exactly once like its results). `sync` replays that topic into a `RocksVersionedStore`, so state can
be read from outside the job (`streamscore state get`), as of a version or an event time.
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


def sync(
    bootstrap: str, topic: str, state_dir: Path, state_type: Any, *, timeout_s: float = 5.0
) -> tuple[int, int]:
    """Apply the changelog `topic` to the store in `state_dir`; returns (versions applied, already present).

    Idempotent: versions the store already holds are skipped. A gap (a version that is not the next one for
    its key) means the store and topic disagree, and is refused with a ConfigError.
    """
    decoder = msgspec.json.Decoder(ChangelogRecord)
    applied = skipped = 0
    with RocksVersionedStore(state_dir, retention=RetentionPolicy()) as store:
        for message in consume(bootstrap, topic, timeout_s=timeout_s):
            record = decoder.decode(message.value)
            latest = store.get(record.key)
            have = latest.version if latest is not None else 0
            if record.version <= have:
                skipped += 1
                continue
            if record.version != have + 1:
                raise ConfigError(
                    f"changelog {topic!r} jumps from version {have} to {record.version} for key {record.key!r}: "
                    f"the store in {state_dir} does not match this topic; sync into an empty --state-dir"
                )
            value = msgspec.convert(record.value, type=state_type)
            store.put(record.key, value, event_time=record.event_time, source=record.source)
            applied += 1
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
