"""`Flight`: one partition's batches between scoring and RocksDB (see `pipelines.runtimes.faust.runner`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pipelines.runtimes.faust.scoring import BatchOutputs


@dataclass
class Flight:
    """A partition's batches between scoring and RocksDB: what waits for a transaction, the committer, the
    offsets the commits reached."""

    #: Offsets below this are scored (in the store's open write batch or written).
    scored_next: int
    #: The input and changelog offsets after the last batch whose Kafka side committed.
    committed_input: int
    committed_changelog: int
    #: Outputs of the batches scored since the committer took the last ones (merged in order), or None.
    queued: BatchOutputs | None = None
    queued_events: int = 0
    queued_stamps: list[int] = field(default_factory=list)
    #: The task committing `queued` until nothing is left (None or done: idle).
    committer: asyncio.Task[None] | None = None
    #: The first commit that failed: nothing scored after it is committed or written.
    failed: BaseException | None = None
    opened_at: float = 0.0

    def queue(self, out: BatchOutputs, events: int, stamps: list[int]) -> None:
        """Add one scored batch's outputs to what the next transaction carries."""
        self.queued_events += events
        self.queued_stamps.extend(stamps)
        queued = self.queued
        if queued is None:
            self.queued = out
            return
        queued.results.extend(out.results)
        queued.dead_letters.extend(out.dead_letters)
        queued.changelog.extend(out.changelog)
        queued.next_offset = out.next_offset
        queued.duplicates += out.duplicates
        queued.expired_keys += out.expired_keys
        for decision, n in out.decisions.items():
            queued.decisions[decision] = queued.decisions.get(decision, 0) + n
        for reason, n in out.letter_reasons.items():
            queued.letter_reasons[reason] = queued.letter_reasons.get(reason, 0) + n

    def take(self) -> tuple[BatchOutputs | None, int, list[int]]:
        """What the next transaction carries (and forget it here)."""
        taken = (self.queued, self.queued_events, self.queued_stamps)
        self.queued, self.queued_events, self.queued_stamps = None, 0, []
        return taken
