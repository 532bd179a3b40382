"""The decode step of each pipeline (validating decoder and key), importing only light modules (msgspec).

Kept apart from `pipelines.specs` so the Flink decode operator never imports numpy or onnxruntime (see
`pipelines.flink.functions` for why that matters in thread mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from operators.decoding import EventDecoder
from operators.reco.decoding import click_decoder
from operators.risk.decoding import transaction_decoder
from pipelines.exceptions import ConfigError


@dataclass(frozen=True)
class DecodeSpec:
    """How a pipeline turns raw values into events and which field keys them."""

    decoder: Callable[[], EventDecoder[Any]]
    key_of: Callable[[Any], str]
    key_field: str


DECODERS: dict[str, DecodeSpec] = {
    "risk": DecodeSpec(transaction_decoder, lambda tx: tx.account_id, "account_id"),
    "reco": DecodeSpec(click_decoder, lambda click: click.session_id, "session_id"),
}


def decode_spec(pipeline: str) -> DecodeSpec:
    """The decode spec of `pipeline`; a ConfigError naming the known pipelines otherwise."""
    try:
        return DECODERS[pipeline]
    except KeyError:
        raise ConfigError(f"unknown pipeline {pipeline!r}; known pipelines: {', '.join(sorted(DECODERS))}") from None
