"""Synthetic events of each pipeline as Kafka records (key, JSON value), labels stripped."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from models.synthetic import generate_transactions
from pipelines.exceptions import ConfigError

LABEL_FIELDS = ("label", "pattern")


def synthetic_events(pipeline: str, n: int, seed: int) -> list[dict[str, object]]:
    """`n` seeded synthetic events of `pipeline`, without ground-truth fields."""
    if n < 1:
        raise ConfigError(f"--events must be >= 1, got {n}")
    if pipeline != "risk":
        raise ConfigError(f"no synthetic generator for pipeline {pipeline!r}")
    events = generate_transactions(n, seed)
    return [{k: v for k, v in e.items() if k not in LABEL_FIELDS} for e in events]


def synthetic_records(pipeline: str, n: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """`(account_id, JSON)` records of `n` seeded synthetic events."""
    for event in synthetic_events(pipeline, n, seed):
        yield str(event["account_id"]).encode(), msgspec.json.encode(event)
