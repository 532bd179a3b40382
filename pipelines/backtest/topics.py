"""The input window of a backtest (its topic reads are `pipelines.kafka.topic_reader`'s)."""

from __future__ import annotations

from operators.decoding import Rejection
from pipelines.kafka.topic_reader import read_values
from pipelines.registry import get


def window_event_ids(
    pipeline: str, bootstrap: str, topic: str, starts: dict[int, int], ends: dict[int, int]
) -> tuple[set[str], int]:
    """The event ids of the valid input events in [starts, ends), and the number of invalid records there."""
    decoder = get(pipeline).decoder()
    ids: set[str] = set()
    invalid = 0
    for value in read_values(bootstrap, topic, starts=starts, ends=ends):
        decoded = decoder.decode(value)
        if isinstance(decoded, Rejection):
            invalid += 1
        else:
            ids.add(str(decoded.event_id))
    return ids, invalid
