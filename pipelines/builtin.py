"""The built-in pipelines, declared once: risk (transactions -> score, decision, reasons) and reco (click
sessions -> top-k items). Found by `pipelines.registry` through the entry points `pyproject.toml` declares."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from operators.reco.decoding import click_decoder
from operators.risk.decoding import transaction_decoder
from pipelines.config import CONFIG_DIR, RecoPipelineConfig, RiskPipelineConfig
from pipelines.reco.loop import RecoLoop
from pipelines.registry import PipelineDefinition
from pipelines.risk.loop import RiskLoop
from state.codec import Codec


def _risk_operator(config: RiskPipelineConfig) -> Any:
    from pipelines.config import risk_operator_from_config

    return risk_operator_from_config(config)


def _reco_operator(config: RecoPipelineConfig) -> Any:
    from pipelines.config import reco_operator_from_config

    return reco_operator_from_config(config)


def _risk_codec() -> Codec[Any]:
    from operators.risk.operator import RISK_STATE_CODEC

    return RISK_STATE_CODEC


def _reco_codec() -> Codec[Any]:
    from operators.reco.operator import RECO_STATE_CODEC

    return RECO_STATE_CODEC


#: The drift scenario of the risk generator: a new fraud pattern (`micro_drain`) from 40 % of the stream's time
#: span on, 1.5 % of its events, which the shipped model has never seen.
EMERGING_FRAUD = "emerging-fraud"
EMERGING_FROM, EMERGING_RATE = 0.4, 0.015


def _transactions(n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    from models.synthetic import generate_transactions

    if scenario == EMERGING_FRAUD:
        return generate_transactions(n, seed, emerging_from=EMERGING_FROM, emerging_rate=EMERGING_RATE)
    return generate_transactions(n, seed)


#: The drift scenario of the click generator: from 40 % of the stream's time span on, sessions follow new
#: "goes-with" items (what sells together changed), which the shipped model never saw.
NEW_SEASON = "new-season"
NEW_SEASON_FROM = 0.4


def _clicks(n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    from models.synthetic import generate_clicks

    if scenario == NEW_SEASON:
        return generate_clicks(n, seed, new_season_from=NEW_SEASON_FROM)
    return generate_clicks(n, seed)


def _train(name: str) -> Any:
    """`pipelines.training.train` for model `name` (imports torch only when called)."""

    def train_hook(*args: Any, **kwargs: Any) -> Any:
        from pipelines.training import train

        return train(name, *args, **kwargs)

    return train_hook


def _evaluate(name: str) -> Any:
    """`pipelines.training.evaluation` for model `name`."""

    def evaluate_hook(*args: Any, **kwargs: Any) -> Any:
        from pipelines.training import evaluation

        return evaluation(name, *args, **kwargs)

    return evaluate_hook


RISK = PipelineDefinition(
    name="risk",
    key_field="account_id",
    decoder=transaction_decoder,
    key_of=attrgetter("account_id"),
    config_type=RiskPipelineConfig,
    default_config=CONFIG_DIR / "risk.yaml",
    operator_from_config=_risk_operator,
    state_codec=_risk_codec,
    result_key=attrgetter("account_id"),
    generate=_transactions,
    scenarios=(EMERGING_FRAUD,),
    train=_train("risk"),
    evaluate=_evaluate("risk"),
    loop=RiskLoop(),
)

RECO = PipelineDefinition(
    name="reco",
    key_field="session_id",
    decoder=click_decoder,
    key_of=attrgetter("session_id"),
    config_type=RecoPipelineConfig,
    default_config=CONFIG_DIR / "reco.yaml",
    operator_from_config=_reco_operator,
    state_codec=_reco_codec,
    result_key=attrgetter("session_id"),
    generate=_clicks,
    scenarios=(NEW_SEASON,),
    train=_train("reco"),
    evaluate=_evaluate("reco"),
    loop=RecoLoop(),
)
