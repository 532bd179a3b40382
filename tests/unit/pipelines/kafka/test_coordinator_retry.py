"""`retry_coordinator`: a request the group coordinator refuses while it moves is asked again; nothing else is."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from pipelines.kafka.clients import retry_coordinator


def _failing(codes: list[int], answer: str = "offsets") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return answer

    return calls, call


def test_a_moving_coordinator_is_asked_again_until_it_answers() -> None:
    calls, call = _failing([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                            KafkaError.COORDINATOR_NOT_AVAILABLE])
    assert retry_coordinator(call, pause_s=0.01) == "offsets"
    assert len(calls) == 4


def test_any_other_error_is_raised_at_once() -> None:
    calls, call = _failing([KafkaError.GROUP_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as raised:
        retry_coordinator(call, pause_s=0.01)
    assert raised.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED and len(calls) == 1


def test_a_coordinator_that_never_settles_raises_its_error_at_the_deadline() -> None:
    calls, call = _failing([KafkaError.NOT_COORDINATOR] * 1000)
    with pytest.raises(KafkaException) as raised:
        retry_coordinator(call, deadline_s=0.2, pause_s=0.05)
    assert raised.value.args[0].code() == KafkaError.NOT_COORDINATOR and 2 <= len(calls) <= 6
