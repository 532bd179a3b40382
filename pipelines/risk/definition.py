"""The risk pipeline, declared once (transactions -> score, decision, reasons): found by `pipelines.registry`
through the entry point `pyproject.toml` declares (`risk = "pipelines.risk.definition:RISK"`)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from operators.risk.decoding import transaction_decoder
from pipelines.registry import PipelineDefinition
from pipelines.risk.config import RISK_CONFIG_PATH, RiskPipelineConfig
from pipelines.risk.loop import RiskLoop
from state.codec import Codec


def _operator(config: RiskPipelineConfig) -> Any:
    from pipelines.risk.config import risk_operator_from_config

    return risk_operator_from_config(config)


def _backtest_diff(*args: Any, **kwargs: Any) -> Any:
    """`pipelines.risk.backtest.risk_backtest_diff` (imports numpy and matplotlib only when called)."""
    from pipelines.risk.backtest import risk_backtest_diff

    return risk_backtest_diff(*args, **kwargs)


def _codec() -> Codec[Any]:
    from operators.risk.operator import RISK_STATE_CODEC

    return RISK_STATE_CODEC


#: The drift scenario of the risk generator: a new fraud pattern (`micro_drain`) from 40 % of the stream's time
#: span on, 1.5 % of its events, which the shipped model has never seen.
EMERGING_FRAUD = "emerging-fraud"
EMERGING_FROM, EMERGING_RATE = 0.4, 0.015


def _transactions(n: int, seed: int, scenario: str | None = None) -> list[dict[str, object]]:
    from models.synthetic import generate_transactions

    if scenario == EMERGING_FRAUD:
        return generate_transactions(n, seed, emerging_from=EMERGING_FROM, emerging_rate=EMERGING_RATE)
    return generate_transactions(n, seed)


def _train(*args: Any, **kwargs: Any) -> int:
    """`pipelines.risk.training.train` (imports torch only when called)."""
    from pipelines.risk.training import train

    return train(*args, **kwargs)


def _evaluate(*args: Any, **kwargs: Any) -> Any:
    """`pipelines.risk.training.evaluation`."""
    from pipelines.risk.training import evaluation

    return evaluation(*args, **kwargs)


RISK = PipelineDefinition(
    name="risk",
    key_field="account_id",
    decoder=transaction_decoder,
    key_of=attrgetter("account_id"),
    config_type=RiskPipelineConfig,
    default_config=RISK_CONFIG_PATH,
    operator_from_config=_operator,
    state_codec=_codec,
    result_key=attrgetter("account_id"),
    generate=_transactions,
    scenarios=(EMERGING_FRAUD,),
    train=_train,
    evaluate=_evaluate,
    backtest_diff=_backtest_diff,
    loop=RiskLoop(),
)
