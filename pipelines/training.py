"""What the synthetic training of every pipeline shares: the `Evaluation` a pipeline's evaluation returns, its
report (`write_report`), the manifest's `generator` fields, and `train`/`evaluation`/`evaluate` by pipeline name
(each pipeline's hooks: `PipelineDefinition.train`/`evaluate`; risk's are `pipelines.risk.training`, reco's
`pipelines.reco.training`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.handle import ModelHandle, file_sha256
from models.registry import ModelRegistry
from pipelines.registry import get

DEFAULT_SEED = 1
DEFAULT_EVAL_SEED = 1001  # a holdout stream the default models never saw


@dataclass
class Evaluation:
    """An evaluation run: the headline metrics plus what the report plots (curves, HR@k)."""

    name: str
    ref: str
    seed: int
    events: int
    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    hit_rates: dict[str, list[float]] = field(default_factory=dict)
    ks: tuple[int, ...] = ()


def generator_fields(module: str, version: int, seed: int, events: int) -> dict[str, Any]:
    """The manifest's `generator`: which synthetic generator (module and `GENERATOR_VERSION`), seed and size the
    model was trained on, so a model can be traced to (and retrained on) the very stream."""
    return {"generator": {"module": module, "version": version, "seed": seed, "events": events}}


def unregistered_handle(path: Path, name: str, fields: dict[str, Any]) -> ModelHandle:
    """A handle on a freshly exported file (version 0), to measure it before it is registered."""
    return ModelHandle(path, {**fields, "name": name, "version": 0, "sha256": file_sha256(path)})


def train(name: str, seed: int = DEFAULT_SEED, registry: ModelRegistry | None = None, **options: Any) -> int:
    """Train pipeline `name`'s model on a synthetic stream of `seed` and register it (its `train` hook); returns
    the new version (current only if the name had none). `ValueError` for an option its trainer does not take."""
    hook = get(name).train
    if hook is None:
        raise ValueError(f"train: pipeline {name!r} has no model to train")
    version: int = hook(seed, registry or ModelRegistry(), **options)
    return version


def evaluation(name: str, version: int | None = None, seed: int = DEFAULT_EVAL_SEED, events: int | None = None, *,
               registry: ModelRegistry | None = None, progress: bool = False) -> Evaluation:
    """Evaluate registered `name@version` (current when None) on a fresh synthetic stream of `seed` (the
    pipeline's `evaluate` hook)."""
    hook = get(name).evaluate
    if hook is None:
        raise ValueError(f"evaluate: pipeline {name!r} has no model to evaluate")
    result: Evaluation = hook(version, seed, events, registry=registry or ModelRegistry(), progress=progress)
    return result


def evaluate(name: str, version: int | None = None, seed: int = DEFAULT_EVAL_SEED, events: int | None = None, *,
             registry: ModelRegistry | None = None, progress: bool = False) -> dict[str, float]:
    """The metrics of `evaluation` (risk: `roc_auc`, `pr_auc`, `rules_only_roc_auc`; reco: `hr_at_10`,
    `mrr_at_10`, `popularity_hr_at_10`)."""
    return evaluation(name, version, seed, events, registry=registry, progress=progress).metrics


def write_report(result: Evaluation, report_dir: Path) -> tuple[Path, Path]:
    """Write `<name>@<version>-seed<seed>.json` (metrics and run description) and the PNG next to it."""
    from models.reporting import plot_hit_rates, plot_roc

    report_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{result.ref}-seed{result.seed}"
    json_path = report_dir / f"{stem}.json"
    payload = {
        "model": result.ref,
        "seed": result.seed,
        "events": result.events,
        "metrics": result.metrics,
        "hit_rates": {"k": list(result.ks), **result.hit_rates} if result.ks else None,
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    png_path = report_dir / f"{stem}.png"
    title = f"{result.ref} on seed {result.seed} ({result.events:,} events)"
    if result.curves:
        plot_roc(png_path, result.curves, title, result.metrics)
    else:
        plot_hit_rates(png_path, result.ks, result.hit_rates, title, result.metrics)
    return json_path, png_path
