"""Pipeline specs: for each pipeline, its decoder, key, operator, state codec, result key and default topics.

A spec is looked up by name inside each runtime (Flink functions, the offline scorer), so nothing but the
pipeline name and options crosses process boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from operators.reco.operator import RECO_STATE_CODEC, RecoOperator
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from pipelines.config import RecoPipelineConfig, load_config, load_risk_config, risk_operator_from_config
from pipelines.decoders import DecodeSpec, decode_spec
from pipelines.exceptions import ConfigError
from state.codec import Codec
from state.contract import RetentionPolicy


@dataclass(frozen=True)
class PipelineSpec:
    """Everything a runtime needs to run one pipeline's operator chain."""

    name: str
    decode: DecodeSpec
    operator: Callable[[Path | None], Any]
    state_codec: Codec[Any]
    result_key: Callable[[Any], str]
    retention: RetentionPolicy
    input_topic: str
    output_topic: str
    dlq_topic: str

    def encode_result(self, result: msgspec.Struct) -> bytes:
        """The result as JSON bytes (field order fixed by the schema, so identical results are identical bytes)."""
        return msgspec.json.encode(result)


def _risk_operator(config: Path | None) -> RiskOperator:
    return risk_operator_from_config(load_risk_config(config))


def _reco_operator(config: Path | None) -> RecoOperator:
    if config is None:
        return RecoOperator()
    cfg = load_config(config, pipeline="reco")
    assert isinstance(cfg, RecoPipelineConfig)
    return RecoOperator(k=cfg.k, idle_timeout_ms=cfg.idle_timeout_ms)


RISK = PipelineSpec(
    name="risk",
    decode=decode_spec("risk"),
    operator=_risk_operator,
    state_codec=RISK_STATE_CODEC,
    result_key=lambda result: result.account_id,
    retention=RetentionPolicy(max_versions=16),
    input_topic="risk.transactions",
    output_topic="risk.scores",
    dlq_topic="risk.dlq",
)

RECO = PipelineSpec(
    name="reco",
    decode=decode_spec("reco"),
    operator=_reco_operator,
    state_codec=RECO_STATE_CODEC,
    result_key=lambda result: result.session_id,
    retention=RetentionPolicy(max_versions=8),
    input_topic="reco.clicks",
    output_topic="reco.recommendations",
    dlq_topic="reco.dlq",
)

SPECS: dict[str, PipelineSpec] = {RISK.name: RISK, RECO.name: RECO}


def spec(name: str) -> PipelineSpec:
    """The spec of pipeline `name`; a ConfigError naming the known pipelines otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline {name!r}; known pipelines: {', '.join(sorted(SPECS))}") from None
