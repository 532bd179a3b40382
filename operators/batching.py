"""Micro-batches through an operator: `apply_operator_batch(operator, items)`.

A runtime that owns its loop (the faust runtime) hands the operator a batch of already-fetched events of many
keys at once. An operator that can serve a batch with fewer model calls implements
`process_batch(items) -> [results | Failure per item]` (risk: one MLP call per model and batch; reco: one GRU
step per wave of distinct sessions). Its contract is strict: every item's outcome (results, dead-letter reason
and text, the state versions written, `duplicates`) is exactly what `apply_operator` gives for the same events
one at a time in batch order, `scored_at` aside. Items of one key stay in batch order; the runtime must pass
each item's own state handle of its key (the operator writes through it, in batch order).

An operator built on `operators.core.BatchOperator` has only `process_batch`: its `process` is a batch of one.
Operators without `process_batch` go through `apply_operator` one event at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from operators.core import BatchItem, Failure, apply_operator, failure_of

__all__ = ["BatchItem", "apply_operator_batch", "one_at_a_time"]


def apply_operator_batch(operator: Any, items: Sequence[BatchItem]) -> list[list[Any] | Failure]:
    """The outcome of every item in order: the results `operator` emitted for it, or the `Failure` that made it
    a dead letter; identical to calling `apply_operator` on each item in turn (see the module docstring)."""
    batch = getattr(operator, "process_batch", None)
    if batch is None:
        return [apply_operator(operator, item.event, item.state, item.source) for item in items]
    outcomes: list[list[Any] | Failure] = batch(items)
    return outcomes


def one_at_a_time(
    operator: Any, items: Sequence[BatchItem], error: Exception, duplicates: int, expired: int | None = None
) -> list[list[Any] | Failure]:
    """The fallback of a `process_batch` that could not batch because of `error` (e.g. a model call failed for
    the whole batch): a batch of one is that item's dead letter (its counters as they are); a larger batch
    resets the duplicate (and expired-key) counters to their values before the batch and runs every item
    through `apply_operator` (a batch of one each) in order. Only valid while the batch has written no state."""
    if len(items) == 1:
        return [failure_of(error)]
    operator.duplicates = duplicates
    if expired is not None:
        operator.expired_keys = expired
    return [apply_operator(operator, item.event, item.state, item.source) for item in items]
