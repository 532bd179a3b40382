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

from operators.reco.operator import RECO_STATE_CODEC
from operators.risk.operator import RISK_STATE_CODEC
from pipelines.config import (
    PipelineConfig,
    load_reco_config,
    load_risk_config,
    reco_operator_from_config,
    risk_operator_from_config,
)
from pipelines.decoders import DecodeSpec, decode_spec
from pipelines.exceptions import ConfigError
from state.codec import Codec
from state.contract import RetentionPolicy


@dataclass(frozen=True)
class PipelineSpec:
    """Everything a runtime needs to run one pipeline's operator chain."""

    name: str
    decode: DecodeSpec
    load_config: Callable[[Path | None], PipelineConfig]
    operator_from_config: Callable[[Any], Any]
    state_codec: Codec[Any]
    result_key: Callable[[Any], str]
    retention: RetentionPolicy
    input_topic: str
    output_topic: str
    dlq_topic: str

    def operator(self, config: Path | None = None) -> Any:
        """A new (unopened) operator as the config at `config` describes it (default: the shipped config)."""
        return self.operator_from_config(self.load_config(config))

    def encode_result(self, result: msgspec.Struct) -> bytes:
        """The result as JSON bytes (field order fixed by the schema, so identical results are identical bytes)."""
        return msgspec.json.encode(result)


RISK = PipelineSpec(
    name="risk",
    decode=decode_spec("risk"),
    load_config=load_risk_config,
    operator_from_config=risk_operator_from_config,
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
    load_config=load_reco_config,
    operator_from_config=reco_operator_from_config,
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
