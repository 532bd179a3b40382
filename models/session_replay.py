"""Replay item sessions through a step recommender (`ModelHandle`, numpy + onnxruntime only).

Used by evaluation and the benchmark: sessions advance in lock-step batches, exactly as the streaming
operator advances one session per event (hidden starts at zeros; `seen` holds the items before the
current one; the graph itself also excludes the current item).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.handle import ModelHandle


@dataclass(frozen=True)
class NextItemPredictions:
    """For every scored position: the model's top-k, the true next item, and the items seen before it."""

    top_items: np.ndarray  # int64 [M, K]
    targets: np.ndarray  # int64 [M]
    seen: list[set[int]]  # items of the session up to and including the current one
    positions: list[tuple[int, int]] = field(default_factory=list)  # (session index, position) of each row


def replay_sessions(
    handle: ModelHandle,
    sessions: Sequence[Sequence[int]],
    *,
    batch_sessions: int = 256,
    include_repeats: bool = False,
) -> NextItemPredictions:
    """Run every session through the step model; score each position that has a next item.

    Positions whose next item was already seen in the session are skipped unless `include_repeats`
    (the model never recommends seen items, so they cannot be hits).
    """
    catalog = int(handle.manifest["catalog_size"])
    hidden_size = int(handle.manifest["hidden_size"])
    tops: list[np.ndarray] = []
    targets: list[int] = []
    seen_sets: list[set[int]] = []
    positions: list[tuple[int, int]] = []
    for start in range(0, len(sessions), batch_sessions):
        group = [list(s) for s in sessions[start : start + batch_sessions]]
        hidden = np.zeros((len(group), hidden_size), dtype=np.float32)
        seen = np.zeros((len(group), catalog), dtype=np.float32)
        history: list[set[int]] = [set() for _ in group]
        for t in range(max(len(s) for s in group)):
            active = np.array([b for b, s in enumerate(group) if len(s) > t], dtype=np.int64)
            items = np.array([group[b][t] for b in active], dtype=np.int64)
            out = handle.run({"item": items, "hidden": hidden[active], "seen": seen[active]})
            hidden[active] = out["new_hidden"]
            for row, b in enumerate(active.tolist()):
                item = group[b][t]
                history[b].add(item)
                if 0 <= item < catalog:
                    seen[b, item] = 1.0
                if t + 1 < len(group[b]):
                    target = group[b][t + 1]
                    if include_repeats or target not in history[b]:
                        tops.append(out["top_items"][row])
                        targets.append(target)
                        seen_sets.append(set(history[b]))
                        positions.append((start + b, t))
    k = int(handle.manifest.get("k", 10))
    top_items = np.stack(tops) if tops else np.zeros((0, k), dtype=np.int64)
    return NextItemPredictions(top_items, np.array(targets, dtype=np.int64), seen_sets, positions)
