"""`round6`: `round(x, 6)` for floats, bit for bit, at about half its cost.

Scores are reported rounded to 6 decimals. CPython's `round(x, 6)` formats `x` as a correctly rounded decimal string
and parses it back (~3,500 machine instructions); the reco operator rounds ten scores per click. `round6` takes a
shortcut only where it provably gives the same double, and calls `round(x, 6)` everywhere else:

With `Y = x * 10**6` (exact) and `y = fl(x * 1e6)`, `|y - Y| <= ulp(y) / 2 < 1e-7` while `|y| < 1e9`. If the
nearest integer `n` of `y` has `|y - n| < 0.4999`, then `|Y - n| < 0.5`: `n` is the unique nearest integer of `Y`,
so the decimal that `round` produces is exactly `n * 10**-6`, and the double nearest to it is the correctly
rounded quotient `n / 1e6` (both operands exact). Exact and near ties, NaN, infinities and large values take
`round(x, 6)`; a zero result keeps the sign of `x` (`round(-1e-7, 6)` is `-0.0`).
"""

from __future__ import annotations

import math


def round6(x: float) -> float:
    """Exactly `round(x, 6)` (same double, sign of zero included) for a float `x`."""
    y = x * 1e6
    if -1e9 < y < 1e9:
        n = round(y)
        if abs(y - n) < 0.4999:
            return n / 1e6 if n else math.copysign(0.0, x)
    return round(x, 6)
