"""The reco pipeline's config type (`pipeline: reco`; the shipped defaults are `pipelines/reco/reco.yaml`):
`topics`, `model: reco[@N]`, `k`, `idle_timeout_minutes` and `state`, and optionally `routes` and `backends` as a
risk config has them (a remote route steps its sessions on a model server). `reco_operator_from_config(cfg)`
builds the `RecoOperator` it describes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

import msgspec

from operators.reco.operator import RecoOperator
from operators.reco.schemas import Click
from pipelines.config import FieldError, ModelPipelineConfig, PositiveInt, load_config
from pipelines.exceptions import ConfigError

#: The shipped reco config (`RecoOperator` defaults and the default topics).
RECO_CONFIG_PATH = Path(__file__).resolve().with_name("reco.yaml")


class RecoPipelineConfig(ModelPipelineConfig, frozen=True, tag="reco"):
    """The session recommendation pipeline: `k` items per click, sessions end after `idle_timeout_minutes`."""

    MODEL_NAME: ClassVar[str] = "reco"
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = Click

    k: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    idle_timeout_minutes: PositiveInt

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.k <= 1000:
            raise FieldError(f"k: expected int in [1, 1000], got {self.k}")
        if self.idle_timeout_minutes < 1:
            raise FieldError(f"idle_timeout_minutes: expected int >= 1, got {self.idle_timeout_minutes}")

    @property
    def idle_timeout_ms(self) -> int:
        """`idle_timeout_minutes` in milliseconds."""
        return self.idle_timeout_minutes * 60_000


def load_reco_config(path: str | os.PathLike[str] | None = None) -> RecoPipelineConfig:
    """The reco config at `path` (default: the shipped `reco.yaml`); `ConfigError` if bad or not a reco one."""
    config = load_config(RECO_CONFIG_PATH if path is None else path, pipeline="reco")
    assert isinstance(config, RecoPipelineConfig)
    return config


def reco_operator_from_config(cfg: RecoPipelineConfig) -> RecoOperator:
    """The `RecoOperator` of a reco config: k, idle timeout, the default model and routes."""
    if not isinstance(cfg, RecoPipelineConfig):
        raise ConfigError(f"reco_operator_from_config needs a reco config, got pipeline {cfg.pipeline!r}")
    return RecoOperator(k=cfg.k, idle_timeout_ms=cfg.idle_timeout_ms, model=cfg.model, routes=cfg.routes,
                        dedup_window_ms=cfg.state.dedup_window_ms,
                        dedup_max_ids=cfg.state.dedup_max_ids, ttl_ms=cfg.state.ttl_ms,
                        backends=cfg.backend_configs())
