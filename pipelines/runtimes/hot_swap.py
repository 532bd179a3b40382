"""What every runtime does with the hot-swaps an operator reports (`refresh_models()`): log them and count them.

A swap that failed (the promoted version's file missing, its sha256 not the manifest's, onnxruntime refusing
it, or the operator refusing its manifest) leaves the running version scoring; it is logged at ERROR with the
reason and counted in `model_swap_failures` (next to `model_swaps`), and `streamscore models show NAME@VERSION`
says why that version is unusable. The version is tried again only after the registry's `CURRENT` moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # typing only: this module is imported where onnxruntime may not be loaded yet
    from operators.routing import ModelSwap

_LOG = logging.getLogger("streamscore.models")


class SwapCounts(NamedTuple):
    """How many swaps happened and how many were refused."""

    swapped: int
    failed: int


def report_swaps(pipeline: str, swaps: Iterable[ModelSwap]) -> SwapCounts:
    """Log each of `swaps` (a done swap at WARNING, a refused one at ERROR with its reason) and count them."""
    swapped = failed = 0
    for swap in swaps:
        if swap.error is None:
            swapped += 1
            _LOG.warning("%s: model %s swapped %s -> %s", pipeline, swap.reference, swap.old, swap.new)
        else:
            failed += 1
            _LOG.error("%s: model %s stays %s; %s refused: %s (see `streamscore models show %s`)", pipeline,
                       swap.reference, swap.old, swap.new, swap.error, swap.new)
    return SwapCounts(swapped, failed)
