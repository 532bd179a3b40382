"""Declarative risk rules: typed, validated rule specs (loadable from YAML) evaluated together per event.

Each rule has a stable reason `code` (reported in `RiskResult.reasons` when it fires) and an `action`
(`review` or `block`): the mildest decision the transaction gets when the rule fires. Kinds:

* `amount_above`: `amount > limit`, the limit being `per_currency[currency]`, else `amount` (no limit: never).
* `count_in_window`: `count` or more of the account's transactions (this one included) have an event time in
  `[ts - window, ts]`.
* `country_change_within`: the account has a previous transaction, its country differs from this one's, and
  it is at most `window_minutes` away in event time.
* `new_device_and_country`: the account is known and both the device and the country are new to it.
* `feature_at_least`: `features[feature] >= threshold` and every `also` feature `>=` its threshold
  (names from FEATURE_NAMES).

"Previous transaction" is the account's latest transaction by event time seen before this event (the feature
state's `last_ts`/`last_country`); for a late (out-of-order) event that one may be *later* than the event, so
the gap is taken as an absolute value.

Rule state beyond the feature state is one sorted list of recent event times per account (`recent_ts`,
kept in the versioned `RiskState`), only when a `count_in_window` rule exists. It is bounded by the largest
count window (times older than `newest - window` are dropped) and by `MAX_RECENT_TIMESTAMPS` (the oldest
are dropped first). For in-order streams, a `count_in_window` rule therefore decides exactly as if the whole
history were kept (its `count` is at most the cap); for out-of-order events the count is a lower bound of
the true count (it only sees retained times), always >= 1 (the event itself). Events are never dropped.

Semantic errors in a rule raise `RuleConfigError` (an `OperatorConfigError` and a `ValueError`, so msgspec
reports it with the rule's path when rules are decoded from a config file). Its message starts with the
offending field (`window_minutes: ...`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np

from operators.exceptions import OperatorConfigError
from operators.risk.features import FEATURE_NAMES, RiskFeatureState
from operators.risk.schemas import Transaction

MINUTE_MS = 60_000
#: The longest window a rule may use (7 days): bounds the rule state in time.
MAX_WINDOW_MINUTES = 7 * 24 * 60
#: The most recent event times kept per account for `count_in_window` rules (the hard cap of `recent_ts`).
MAX_RECENT_TIMESTAMPS = 128
#: Reason codes the policy itself emits; rules may not use them.
RESERVED_CODES = frozenset({"model_high_score", "model_elevated_score"})

_FEATURE_INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}

Code = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_]{0,63}\\Z")]
Action = Literal["review", "block"]
WindowMinutes = Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW_MINUTES)]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}\\Z")]


class RuleConfigError(OperatorConfigError, ValueError):
    """A rule (or a set of rules) is invalid; the message starts with the offending field."""


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees for one event: the event, the account's feature state *before* it, the feature
    vector scored for it (FEATURE_NAMES order), and the account's retained event times, sorted ascending,
    this event's time included (empty when no rule needs them)."""

    event: Transaction
    before: RiskFeatureState
    features: np.ndarray
    recent_ts: Sequence[int]


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    """Base of every rule kind: a stable reason `code` and the minimum decision (`action`) when it fires."""

    code: Code
    action: Action = "review"

    def fires(self, ctx: RuleContext) -> bool:
        """True if the rule fires on this event."""
        raise NotImplementedError

    @property
    def recent_window_ms(self) -> int:
        """How far back in event time this rule needs the account's recent event times (0: not at all)."""
        return 0


def _finite(field: str, value: float, *, positive: bool = False) -> None:
    if not math.isfinite(value) or (positive and value <= 0):
        expected = "a finite number > 0" if positive else "a finite number"
        raise RuleConfigError(f"{field}: expected {expected}, got {value!r}")


def _feature(field: str, name: str) -> None:
    if name not in _FEATURE_INDEX:
        raise RuleConfigError(
            f"{field}: unknown feature {name!r}; use one of: {', '.join(FEATURE_NAMES)}"
        )


class AmountAbove(Rule, frozen=True, tag="amount_above"):
    """Fires when the amount is strictly above the limit of its currency (`per_currency`), else `amount`."""

    amount: float | None = None
    per_currency: dict[Currency, float] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.amount is None and not self.per_currency:
            raise RuleConfigError("amount: give `amount`, `per_currency` or both (the rule would never fire)")
        if self.amount is not None:
            _finite("amount", self.amount, positive=True)
        for currency, limit in self.per_currency.items():
            _finite(f"per_currency.{currency}", limit, positive=True)

    def limit_for(self, currency: str) -> float | None:
        """The amount limit for `currency` (None: the rule does not apply to it)."""
        return self.per_currency.get(currency, self.amount)

    def fires(self, ctx: RuleContext) -> bool:
        """True if `amount > limit` for the event's currency."""
        limit = self.limit_for(ctx.event.currency)
        return limit is not None and ctx.event.amount > limit


class CountInWindow(Rule, frozen=True, tag="count_in_window"):
    """Fires when `count` or more of the account's transactions (this one included) have an event time
    within `window_minutes` before this one's, both ends inclusive."""

    count: Annotated[int, msgspec.Meta(ge=1)]
    window_minutes: WindowMinutes

    def __post_init__(self) -> None:
        if self.count < 1:
            raise RuleConfigError(f"count: expected int >= 1, got {self.count}")
        if self.count > MAX_RECENT_TIMESTAMPS:
            raise RuleConfigError(
                f"count: expected int <= {MAX_RECENT_TIMESTAMPS} (the recent event times kept per account), "
                f"got {self.count}"
            )
        if not 1 <= self.window_minutes <= MAX_WINDOW_MINUTES:
            raise RuleConfigError(
                f"window_minutes: expected int in [1, {MAX_WINDOW_MINUTES}], got {self.window_minutes}"
            )

    @property
    def recent_window_ms(self) -> int:
        """The window in ms."""
        return self.window_minutes * MINUTE_MS

    def count_for(self, ctx: RuleContext) -> int:
        """How many retained event times lie in `[ts - window, ts]` (at least 1: the event itself)."""
        ts = ctx.event.ts
        recent = ctx.recent_ts
        return max(1, bisect.bisect_right(recent, ts) - bisect.bisect_left(recent, ts - self.recent_window_ms))

    def fires(self, ctx: RuleContext) -> bool:
        """True if the count in the window reaches `count`."""
        return self.count_for(ctx) >= self.count


class CountryChangeWithin(Rule, frozen=True, tag="country_change_within"):
    """Fires when the country differs from the previous transaction's and that one is at most
    `window_minutes` away in event time."""

    window_minutes: WindowMinutes

    def __post_init__(self) -> None:
        if not 1 <= self.window_minutes <= MAX_WINDOW_MINUTES:
            raise RuleConfigError(
                f"window_minutes: expected int in [1, {MAX_WINDOW_MINUTES}], got {self.window_minutes}"
            )

    def fires(self, ctx: RuleContext) -> bool:
        """True on a country change within the window."""
        before = ctx.before
        if before.count == 0 or ctx.event.country == before.last_country:
            return False
        return abs(ctx.event.ts - before.last_ts) <= self.window_minutes * MINUTE_MS


class NewDeviceAndCountry(Rule, frozen=True, tag="new_device_and_country"):
    """Fires when a known account uses a device and a country it has not used before (account takeover)."""

    def fires(self, ctx: RuleContext) -> bool:
        """True if both `new_device` and `new_country` are set in the feature vector."""
        features = ctx.features
        return bool(
            features[_FEATURE_INDEX["new_device"]] >= 1.0 and features[_FEATURE_INDEX["new_country"]] >= 1.0
        )


class FeatureAtLeast(Rule, frozen=True, tag="feature_at_least"):
    """Fires when `features[feature] >= threshold` and every feature in `also` is at least its threshold."""

    feature: str
    threshold: float
    also: dict[str, float] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _feature("feature", self.feature)
        _finite("threshold", self.threshold)
        for name, limit in self.also.items():
            _feature(f"also.{name}", name)
            _finite(f"also.{name}", limit)

    @property
    def checks(self) -> tuple[tuple[str, float], ...]:
        """Every (feature, threshold) pair that must hold, the main one first."""
        return ((self.feature, self.threshold), *self.also.items())

    def fires_on(self, features: np.ndarray) -> bool:
        """True if the rule fires on `features` (FEATURE_NAMES order)."""
        return all(float(features[_FEATURE_INDEX[name]]) >= limit for name, limit in self.checks)

    def fires(self, ctx: RuleContext) -> bool:
        """True if every check holds on the event's feature vector."""
        return self.fires_on(ctx.features)


#: Every rule kind, as msgspec decodes it (tagged by `kind`).
AnyRule = AmountAbove | CountInWindow | CountryChangeWithin | NewDeviceAndCountry | FeatureAtLeast
RULE_KINDS: tuple[str, ...] = (
    "amount_above",
    "count_in_window",
    "country_change_within",
    "new_device_and_country",
    "feature_at_least",
)

#: The built-in rules (the same as `pipelines/configs/risk.yaml`; a test keeps them equal).
DEFAULT_RULES: tuple[Rule, ...] = (
    FeatureAtLeast(code="amount_far_above_norm", feature="amount_z", threshold=4.0, also={"log_count": 1.79}),
    FeatureAtLeast(code="new_device_and_country", feature="new_device", threshold=1.0, also={"new_country": 1.0}),
    FeatureAtLeast(code="velocity_burst", feature="velocity_1h", threshold=10.0),
    FeatureAtLeast(code="many_merchants_24h", feature="distinct_merchants_24h", threshold=2.77),  # log1p(15)
)


class RuleOutcome(msgspec.Struct, frozen=True):
    """The rules that fired on one event (in rule order) and the account's new `recent_ts`."""

    fired: tuple[Rule, ...]
    recent_ts: list[int]


def check_rules(rules: Sequence[Rule]) -> None:
    """Raise `RuleConfigError` (message `rules[i].code: ...`) on a duplicate or reserved reason code."""
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.code in RESERVED_CODES:
            raise RuleConfigError(
                f"rules[{i}].code: {rule.code!r} is reserved for the model's reasons; choose another code"
            )
        if rule.code in seen:
            raise RuleConfigError(
                f"rules[{i}].code: duplicate code {rule.code!r} (also rules[{seen[rule.code]}]); codes must be unique"
            )
        seen[rule.code] = i


class RuleSet:
    """An ordered set of rules with unique codes, evaluated together on each event.

    `window_ms` is the largest `count_in_window` window (0 when there is none: no recent times are kept).
    """

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule) or type(rule) is Rule:
                raise RuleConfigError(f"rules[{i}]: expected a rule of kind {RULE_KINDS}, got {rule!r}")
        check_rules(self.rules)
        self.window_ms: int = max((rule.recent_window_ms for rule in self.rules), default=0)
        self._plan = tuple((rule, _feature_checks(rule)) for rule in self.rules)
        self._needs_context = any(checks is None for _, checks in self._plan)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSet) and self.rules == other.rules

    def __hash__(self) -> int:
        return hash(tuple(rule.code for rule in self.rules))

    def __repr__(self) -> str:
        return f"RuleSet({[rule.code for rule in self.rules]})"

    def remember(self, recent_ts: Sequence[int], ts: int) -> list[int]:
        """`recent_ts` (sorted) with `ts` inserted, before pruning (what rules see for this event)."""
        if self.window_ms == 0:
            return []
        updated = list(recent_ts)
        bisect.insort(updated, ts)
        return updated

    def prune(self, recent_ts: list[int]) -> list[int]:
        """Drop times older than `newest - window_ms`, then keep at most `MAX_RECENT_TIMESTAMPS` newest ones."""
        if self.window_ms == 0 or not recent_ts:
            return []
        cutoff = recent_ts[-1] - self.window_ms
        kept = recent_ts[bisect.bisect_left(recent_ts, cutoff):]
        return kept[-MAX_RECENT_TIMESTAMPS:]

    def evaluate(
        self,
        event: Transaction,
        before: RiskFeatureState,
        recent_ts: Sequence[int],
        features: np.ndarray | bytes,
        values: Sequence[float] | None = None,
    ) -> RuleOutcome:
        """Evaluate every rule on `event` (given the account's state before it and its feature vector: float32,
        as an array or its native bytes); return the fired rules in rule order and the account's new, bounded
        `recent_ts`.

        `values` may give the vector's elements as Python floats (`features.tolist()`), when the caller has them.
        """
        seen = self.remember(recent_ts, event.ts) if self.window_ms else []
        ctx = None
        if self._needs_context or values is None:
            array = features if isinstance(features, np.ndarray) else np.frombuffer(features, dtype=np.float32)
            if self._needs_context:
                ctx = RuleContext(event=event, before=before, features=array, recent_ts=seen)
            if values is None:
                values = array.tolist()
        fired = []
        for rule, checks in self._plan:
            if checks is not None:
                for index, limit in checks:
                    if not values[index] >= limit:
                        break
                else:
                    fired.append(rule)
            elif rule.fires(ctx):  # type: ignore[arg-type]  # not None: a rule without checks needs the context
                fired.append(rule)
        return RuleOutcome(fired=tuple(fired), recent_ts=self.prune(seen) if self.window_ms else [])


def _feature_checks(rule: Rule) -> tuple[tuple[int, float], ...] | None:
    """The (feature index, threshold) pairs that decide a rule that only compares features with thresholds,
    exactly as its `fires` does; None for any other rule (it is asked through `fires`)."""
    if type(rule) is FeatureAtLeast:
        return tuple((_FEATURE_INDEX[name], limit) for name, limit in rule.checks)
    if type(rule) is NewDeviceAndCountry:
        return ((_FEATURE_INDEX["new_device"], 1.0), (_FEATURE_INDEX["new_country"], 1.0))
    return None
