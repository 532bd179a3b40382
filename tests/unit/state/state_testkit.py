"""Test support for `state`: one `Backend` per store implementation (open, reopen, damage on purpose)
and `ModelStore`, the trivial pure-Python model the property tests compare every backend against."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rocksdict import Options, Rdict

from state import MemoryVersionedStore, RetentionPolicy, RocksVersionedStore, SourceCoordinates
from state.codec import Codec, MsgpackCodec
from state.memory import CHECKPOINT_FILE
from state.rocks import META_KEY

AnyStore = MemoryVersionedStore[Any] | RocksVersionedStore[Any]


class Backend:
    """Opens one kind of store in a test directory and knows how to reopen or damage it."""

    name: str

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, retention: RetentionPolicy, codec: Codec[Any] | None = None) -> AnyStore:
        """A fresh, empty store."""
        raise NotImplementedError

    def reopen(self, store: AnyStore, retention: RetentionPolicy | None = None) -> AnyStore:
        """Close `store` and return a store with the same committed state (persistence round trip), with
        `retention` if given (applied from each key's next put)."""
        raise NotImplementedError

    def restore(
        self, checkpoint: Path, retention: RetentionPolicy, codec: Codec[Any] | None = None
    ) -> AnyStore:
        """A new store holding the state of `checkpoint`."""
        raise NotImplementedError

    def corrupt_value(self, store: AnyStore, key: str, version: int) -> AnyStore:
        """Replace the stored value bytes of (key, version) by garbage; returns the store to use next."""
        raise NotImplementedError

    def write_foreign_format(self, store: AnyStore, checkpoint: Path) -> None:
        """Make `checkpoint` (a checkpoint of `store`) look as if written by a future format version."""
        raise NotImplementedError


class MemoryBackend(Backend):
    """`MemoryVersionedStore`; reopen = checkpoint + restore."""

    name = "memory"

    def open(self, retention: RetentionPolicy, codec: Codec[Any] | None = None) -> AnyStore:
        return MemoryVersionedStore(codec, retention=retention)

    def reopen(self, store: AnyStore, retention: RetentionPolicy | None = None) -> AnyStore:
        assert isinstance(store, MemoryVersionedStore)
        target = self.root / f"reopen-{id(store)}-{len(list(self.root.iterdir()))}"
        store.checkpoint(target)
        store.close()
        restored = MemoryVersionedStore.restore(target, store.codec, retention=retention or store.retention)
        shutil.rmtree(target)
        return restored

    def restore(
        self, checkpoint: Path, retention: RetentionPolicy, codec: Codec[Any] | None = None
    ) -> AnyStore:
        return MemoryVersionedStore.restore(checkpoint, codec, retention=retention)

    def corrupt_value(self, store: AnyStore, key: str, version: int) -> AnyStore:
        assert isinstance(store, MemoryVersionedStore)
        from state.layout import slot_of

        data = store._keys[key]
        slot = slot_of(version, data.head.ring)
        data.slots[slot] = data.slots[slot]._replace(payload=b"\x01\xc1garbage")  # 0xc1 is never valid msgpack
        return store

    def write_foreign_format(self, store: AnyStore, checkpoint: Path) -> None:
        file = checkpoint / CHECKPOINT_FILE
        content = msgspec.msgpack.decode(file.read_bytes())
        content["format"] = 99
        file.write_bytes(msgspec.msgpack.encode(content))


class RocksBackend(Backend):
    """`RocksVersionedStore` in a fresh directory; reopen = close + open the same directory."""

    name = "rocks"

    def open(self, retention: RetentionPolicy, codec: Codec[Any] | None = None) -> AnyStore:
        path = self.root / f"db-{len(list(self.root.iterdir()))}"
        return RocksVersionedStore(path, codec, retention=retention)

    def reopen(self, store: AnyStore, retention: RetentionPolicy | None = None) -> AnyStore:
        assert isinstance(store, RocksVersionedStore)
        store.close()
        return RocksVersionedStore(store.path, store.codec, retention=retention or store.retention)

    def restore(
        self, checkpoint: Path, retention: RetentionPolicy, codec: Codec[Any] | None = None
    ) -> AnyStore:
        target = self.root / f"restored-{len(list(self.root.iterdir()))}"
        return RocksVersionedStore.restore(checkpoint, target, codec, retention=retention)

    def corrupt_value(self, store: AnyStore, key: str, version: int) -> AnyStore:
        assert isinstance(store, RocksVersionedStore)
        from state._rocks_keys import HEAD, slot_key
        from state.layout import decode_head, decode_record, encode_record, slot_of

        kb = key.encode()
        store.close()
        with Rdict(str(store.path), Options(raw_mode=True)) as db:
            head = decode_head(db[HEAD + kb])
            raw_key = slot_key(kb, slot_of(version, head.ring))
            original = decode_record(db[raw_key])
            db[raw_key] = encode_record(version, original.event_time, original.source, b"\x01\xc1garbage")
        return RocksVersionedStore(store.path, store.codec, retention=store.retention)

    def write_foreign_format(self, store: AnyStore, checkpoint: Path) -> None:
        with Rdict(str(checkpoint), Options(raw_mode=True)) as db:
            meta = msgspec.msgpack.decode(db[META_KEY])
            meta["format"] = 99
            db[META_KEY] = msgspec.msgpack.encode(meta)


BACKENDS: dict[str, type[Backend]] = {"memory": MemoryBackend, "rocks": RocksBackend}


class OtherCodec(MsgpackCodec[Any]):
    """A msgpack codec that claims another byte format (to test codec-mismatch refusal)."""

    @property
    def format_id(self) -> str:
        return "other/7"


@dataclass
class ModelVersion:
    """One version in the model."""

    version: int
    event_time: int
    value: Any
    source: SourceCoordinates | None


@dataclass
class ModelStore:
    """The reference semantics of `VersionedStore`, written as plainly as possible (lists, linear scans)."""

    retention: RetentionPolicy
    retained: dict[str, list[ModelVersion]] = field(default_factory=dict)  # oldest first
    watermark: dict[str, int] = field(default_factory=dict)
    last_version: dict[str, int] = field(default_factory=dict)  # survives delete
    sides: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def put(self, key: str, value: Any, event_time: int, source: SourceCoordinates | None = None) -> int:
        version = self.last_version.get(key, 0) + 1
        self.last_version[key] = version
        versions = self.retained.setdefault(key, [])
        versions.append(ModelVersion(version, event_time, value, source))
        self.watermark[key] = max(self.watermark.get(key, event_time), event_time)
        n, h = self.retention.max_versions, self.retention.horizon_ms
        while len(versions) > 1 and (
            (n is not None and versions[0].version <= version - n)
            or (h is not None and versions[0].event_time < self.watermark[key] - h)
        ):
            versions.pop(0)
        return version

    def delete(self, key: str) -> None:
        self.retained.pop(key, None)
        self.watermark.pop(key, None)
        self.sides.pop(key, None)

    def forget(self, key: str) -> None:
        self.delete(key)
        self.last_version.pop(key, None)

    def put_side(self, key: str, name: str, value: bytes | None) -> None:
        if value is None:
            self.sides.get(key, {}).pop(name, None)
        else:
            self.sides.setdefault(key, {})[name] = value

    def side(self, key: str, name: str) -> bytes | None:
        return self.sides.get(key, {}).get(name)

    def copy(self) -> ModelStore:
        return ModelStore(self.retention, {k: list(v) for k, v in self.retained.items()}, dict(self.watermark),
                          dict(self.last_version), {k: dict(v) for k, v in self.sides.items()})

    def live_keys(self) -> set[str]:
        return set(self.retained)

    def get(self, key: str) -> ModelVersion | None:
        versions = self.retained.get(key)
        return versions[-1] if versions else None

    def as_of(self, key: str, version: int) -> ModelVersion | None:
        return next((v for v in self.retained.get(key, []) if v.version == version), None)

    def as_of_time(self, key: str, event_time: int) -> ModelVersion | None:
        candidates = [v for v in self.retained.get(key, []) if v.event_time <= event_time]
        return max(candidates, key=lambda v: v.version) if candidates else None

    def history(self, key: str, limit: int) -> list[ModelVersion]:
        return list(reversed(self.retained.get(key, [])))[:limit]


def as_tuple(v: Any) -> tuple[int, int, Any, SourceCoordinates | None] | None:
    """A comparable form of a `StateVersion` or `ModelVersion` (None stays None)."""
    if v is None:
        return None
    return (v.version, v.event_time, v.value, v.source)
