"""Synthetic events of each pipeline as Kafka records (key, JSON value), labels stripped."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from pipelines.exceptions import ConfigError, UsageError
from pipelines.registry import get

LABEL_FIELDS = ("label", "pattern")


def generated_events(pipeline: str, n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    """`n` seeded synthetic events of `pipeline` (of `scenario`, if given) with their ground-truth fields."""
    if n < 1:
        raise UsageError(f"--events must be >= 1, got {n}")
    spec = get(pipeline)
    if spec.generate is None:
        raise ConfigError(f"pipeline {pipeline!r} has no synthetic generator; publish a file with --file")
    if scenario is None:
        return spec.generate(n, seed)
    if scenario not in spec.scenarios:
        raise UsageError(f"--scenario {scenario!r}: the {pipeline} generator has "
                         f"{', '.join(spec.scenarios) or 'no scenarios'}")
    return spec.generate(n, seed, scenario=scenario)


def synthetic_events(pipeline: str, n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    """`n` seeded synthetic events of `pipeline`, without ground-truth fields."""
    events = generated_events(pipeline, n, seed, scenario)
    return [{k: v for k, v in e.items() if k not in LABEL_FIELDS} for e in events]


def synthetic_records(pipeline: str, n: int, seed: int, scenario: str | None = None) -> Iterator[tuple[bytes, bytes]]:
    """`(key, JSON)` records of `n` seeded synthetic events (keyed by the pipeline's key field)."""
    key_field = get(pipeline).key_field
    for event in synthetic_events(pipeline, n, seed, scenario):
        yield str(event[key_field]).encode(), msgspec.json.encode(event)
