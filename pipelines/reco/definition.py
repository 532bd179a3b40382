"""The reco pipeline, declared once (click sessions -> top-k items): found by `pipelines.registry` through the
entry point `pyproject.toml` declares (`reco = "pipelines.reco.definition:RECO"`)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from operators.reco.decoding import click_decoder
from pipelines.reco.config import RECO_CONFIG_PATH, RecoPipelineConfig
from pipelines.reco.loop import RecoLoop
from pipelines.registry import PipelineDefinition
from state.codec import Codec


def _operator(config: RecoPipelineConfig) -> Any:
    from pipelines.reco.config import reco_operator_from_config

    return reco_operator_from_config(config)


def _backtest_diff(*args: Any, **kwargs: Any) -> Any:
    """`pipelines.reco.backtest.reco_backtest_diff` (imports numpy and matplotlib only when called)."""
    from pipelines.reco.backtest import reco_backtest_diff

    return reco_backtest_diff(*args, **kwargs)


def _codec() -> Codec[Any]:
    from operators.reco.operator import RECO_STATE_CODEC

    return RECO_STATE_CODEC


#: The drift scenario of the click generator: from 40 % of the stream's time span on, sessions follow new
#: "goes-with" items (what sells together changed), which the shipped model never saw.
NEW_SEASON = "new-season"
NEW_SEASON_FROM = 0.4


def _clicks(n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    from models.synthetic import generate_clicks

    if scenario == NEW_SEASON:
        return generate_clicks(n, seed, new_season_from=NEW_SEASON_FROM)
    return generate_clicks(n, seed)


def _train(*args: Any, **kwargs: Any) -> int:
    """`pipelines.reco.training.train` (imports torch only when called)."""
    from pipelines.reco.training import train

    return train(*args, **kwargs)


def _evaluate(*args: Any, **kwargs: Any) -> Any:
    """`pipelines.reco.training.evaluation`."""
    from pipelines.reco.training import evaluation

    return evaluation(*args, **kwargs)


RECO = PipelineDefinition(
    name="reco",
    key_field="session_id",
    decoder=click_decoder,
    key_of=attrgetter("session_id"),
    config_type=RecoPipelineConfig,
    default_config=RECO_CONFIG_PATH,
    operator_from_config=_operator,
    state_codec=_codec,
    result_key=attrgetter("session_id"),
    generate=_clicks,
    scenarios=(NEW_SEASON,),
    train=_train,
    evaluate=_evaluate,
    backtest_diff=_backtest_diff,
    loop=RecoLoop(),
)
