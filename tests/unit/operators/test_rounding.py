"""`round6` returns the very double `round(x, 6)` returns (checked bit for bit on millions of values)."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.rounding import round6


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _float32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_round6_matches_round_on_float32_scores_doubles_and_ties() -> None:
    rng = random.Random(7)
    values = [0.0, -0.0, 1e-7, -1e-7, 5e-7, -5e-7, 1.5e-6, 2.5e-6, 999.9999995, 1e9, -1e9, 1e300, -1e300]
    values += [float("inf"), float("-inf")]
    for _ in range(100_000):
        x = rng.choice((-1.0, 1.0)) * 2.0 ** rng.uniform(-30, 12)
        values += [x, _float32(x), _float32(rng.random())]
    for k in range(-20_000, 20_000):  # exact decimal ties (k / 2**7 has a 5 in the 7th decimal) and near ties
        values += [k / 2**7, k / 2**10, (k + 0.5) / 1e6, k * 1e-6 + 5e-7]
    mismatches = [x for x in values if _bits(round6(x)) != _bits(round(x, 6))]
    assert mismatches == []


@settings(max_examples=2_000, deadline=None)
@given(st.floats(allow_nan=False))
def test_round6_matches_round_on_any_float(x: float) -> None:
    assert _bits(round6(x)) == _bits(round(x, 6))


def test_round6_of_nan_is_nan() -> None:
    assert round6(float("nan")) != round6(float("nan"))
