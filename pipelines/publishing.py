"""Synthetic events of each pipeline as Kafka records (key, JSON value), labels stripped."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from models.synthetic import generate_clicks, generate_transactions
from pipelines.decoders import decode_spec
from pipelines.exceptions import ConfigError

LABEL_FIELDS = ("label", "pattern")


def synthetic_events(pipeline: str, n: int, seed: int) -> list[dict[str, object]]:
    """`n` seeded synthetic events of `pipeline`, without ground-truth fields."""
    if n < 1:
        raise ConfigError(f"--events must be >= 1, got {n}")
    if pipeline == "risk":
        events = generate_transactions(n, seed)
    elif pipeline == "reco":
        events = generate_clicks(n, seed)
    else:
        raise ConfigError(f"no synthetic generator for pipeline {pipeline!r}")
    return [{k: v for k, v in e.items() if k not in LABEL_FIELDS} for e in events]


def synthetic_records(pipeline: str, n: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """`(key, JSON)` records of `n` seeded synthetic events (keyed by the pipeline's key field)."""
    key_field = decode_spec(pipeline).key_field
    for event in synthetic_events(pipeline, n, seed):
        yield str(event[key_field]).encode(), msgspec.json.encode(event)
