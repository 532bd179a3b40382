"""`report_swaps`: a done swap counts in `model_swaps`, a refused one in `model_swap_failures`, each logged (the
refused one at ERROR with its reason and the command that says why the version is unusable)."""

from __future__ import annotations

import logging

import pytest

from operators.routing import ModelSwap
from pipelines.runtimes.faust.metrics import WorkerMetrics
from pipelines.runtimes.hot_swap import report_swaps


def test_swaps_and_refusals_are_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    swaps = [ModelSwap("risk", "risk@3", "risk@4"),
             ModelSwap("risk", "risk@4", "risk@5", "ModelIntegrityError: sha256 of model.onnx is abc")]
    with caplog.at_level(logging.WARNING, logger="streamscore.models"):
        counts = report_swaps("risk", swaps)
    assert (counts.swapped, counts.failed) == (1, 1)
    warning, error = caplog.records
    assert warning.levelno == logging.WARNING and "swapped risk@3 -> risk@4" in warning.getMessage()
    assert error.levelno == logging.ERROR
    assert "stays risk@4; risk@5 refused: ModelIntegrityError" in error.getMessage()
    assert "streamscore models show risk@5" in error.getMessage()


def test_the_faust_worker_exports_the_failures() -> None:
    metrics = WorkerMetrics("risk")
    metrics.model_swap_failures += 2
    assert 'streamscore_model_swap_failures{runtime="faust",pipeline="risk"} 2' in metrics.render().splitlines()
