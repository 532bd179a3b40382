"""Model routing and hot-swap: which registered model scores an event.

A `ModelSelector` holds a default model and ordered `Route`s. Each route names a model and a condition on the
event's attributes (`when`: attribute -> allowed values, or a numeric band `{at_least, below}`); the first route
whose every condition holds picks the model, else the default does. Results name the model that scored them.

Model references follow the registry: `risk@2` pins a version, plain `risk` follows the name's `CURRENT`
pointer. `refresh()` re-reads those pointers; a promoted version is loaded (sha256 verified, checked by the
operator's `accept` callback) and replaces the old one for every later event: the swap happens between two
events, never inside one. A version that cannot be loaded or does not fit the operator is reported and the
running version stays. A `pinned` reference (the CLI's `--model`, replays and backtests) replaces the default
and every route, and is never swapped.

Written as a config section (YAML)::

    routes:
      - {code: high_value, when: {amount: {at_least: 2000}}, model: risk@2}
      - {code: latam, when: {country: [BR, AR, MX]}, model: risk@2}
      - {code: big_tickets, when: {amount: {at_least: 5000}}, model: risk-large@1, backend: server}

A route that names a `backend` (one of the pipeline's `backends`, `operators.remote.backend.BackendConfig`)
is scored by that model server (`RemoteModel`); the route's model is loaded in-process too, as its fallback.
At `open` the server must report the registry's name, version and sha256 for it, else the operator refuses to
start (`RemoteModelMismatchError`); a server that cannot be reached then is checked again before its first use.
Remote models follow no promotions (`refresh` leaves them): a server serves what it was started with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from models.exceptions import ModelError
from models.handle import ModelHandle
from models.registry import ModelRegistry, parse_ref
from operators.exceptions import OperatorConfigError
from operators.remote.backend import BackendConfig, RemoteModel
from operators.remote.exceptions import RemoteCallError

log = logging.getLogger(__name__)
#: What scores an event: a registry model in-process, or one on a model server.
ServedModel = ModelHandle | RemoteModel

Code = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_]{0,63}\\Z")]
ModelRef = Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_-]*(@[1-9][0-9]*)?\\Z")]


class RouteConfigError(OperatorConfigError, ValueError):
    """A route is malformed (a `ValueError` too, so config validation reports it with its field path)."""


class Band(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A numeric band: `at_least <= value < below` (either bound may be left out, not both; see `_check`)."""

    at_least: float | None = None
    below: float | None = None

    def contains(self, value: Any) -> bool:
        """Whether the number `value` lies in the band (a non-number never does)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (self.at_least is None or value >= self.at_least) and (self.below is None or value < self.below)


Condition = list[str | int] | Band


def _condition(attribute: str, value: Any) -> Condition:
    """`value` as a condition, or a `RouteConfigError` naming `when.<attribute>[.field]`."""
    try:
        condition: Condition = msgspec.convert(value, Condition)
    except msgspec.ValidationError as exc:
        detail, _, path = str(exc).partition(" - at `$")
        where = f"when.{attribute}{path.rstrip('`')}"
        if detail.startswith("Object contains unknown field"):
            field = detail.split("`")[1]
            raise RouteConfigError(f"when.{attribute}.{field}: unknown field; allowed: at_least, below") from None
        raise RouteConfigError(
            f"{where}: expected a list of values or a band {{at_least, below}}; {detail[:1].lower()}{detail[1:]}"
        ) from None
    if isinstance(condition, list) and not condition:
        raise RouteConfigError(f"when.{attribute}: the list of values is empty")
    if isinstance(condition, Band):
        if condition.at_least is None and condition.below is None:
            raise RouteConfigError(f"when.{attribute}: a band needs at_least and/or below")
        for name, bound in (("at_least", condition.at_least), ("below", condition.below)):
            if bound is not None and not math.isfinite(bound):
                raise RouteConfigError(f"when.{attribute}.{name}: expected a finite number, got {bound}")
        if condition.at_least is not None and condition.below is not None and condition.at_least >= condition.below:
            raise RouteConfigError(
                f"when.{attribute}.below: must be > at_least ({condition.at_least}), got {condition.below}"
            )
    return condition


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Send events whose attributes all match `when` to `model`; `code` names the route in logs and docs.

    `when` maps an event attribute to a list of allowed values or a `Band` (`{at_least, below}`).
    """

    code: Code
    when: dict[str, Any]
    model: ModelRef
    #: The model server (one of the pipeline's `backends`) that scores this route; None: in-process.
    backend: Code | None = None

    @property
    def target(self) -> str:
        """The key of the model serving this route: the model reference, `@backend`-qualified when remote."""
        return self.model if self.backend is None else f"{self.model}~{self.backend}"

    def __post_init__(self) -> None:
        if not self.when:
            raise RouteConfigError("when: give at least one attribute condition")
        for attribute, value in self.when.items():
            _condition(attribute, value)

    def conditions(self) -> dict[str, Condition]:
        """`when` with each condition validated and typed."""
        return {attribute: _condition(attribute, value) for attribute, value in self.when.items()}


def check_routes(routes: Sequence[Route], event_type: type[msgspec.Struct]) -> None:
    """Refuse routes on attributes `event_type` does not have, or with duplicate codes (`RouteConfigError`)."""
    fields = {f.name for f in msgspec.structs.fields(event_type)}
    seen: set[str] = set()
    for index, route in enumerate(routes):
        if route.code in seen:
            raise RouteConfigError(f"routes[{index}].code: duplicate route code {route.code!r}")
        seen.add(route.code)
        for attribute in route.when:
            if attribute not in fields:
                raise RouteConfigError(
                    f"routes[{index}].when.{attribute}: {event_type.__name__} has no attribute {attribute!r}; "
                    f"known: {', '.join(sorted(fields))}"
                )


@dataclass(frozen=True)
class _CompiledRoute:
    model: str
    members: tuple[tuple[str, frozenset[Any]], ...]
    bands: tuple[tuple[str, Band], ...]

    @classmethod
    def of(cls, route: Route) -> _CompiledRoute:
        conditions = route.conditions()
        members = tuple((a, frozenset(c)) for a, c in conditions.items() if isinstance(c, list))
        bands = tuple((a, c) for a, c in conditions.items() if isinstance(c, Band))
        return cls(route.target, members, bands)

    def matches(self, event: Any) -> bool:
        return all(getattr(event, a) in values for a, values in self.members) and all(
            band.contains(getattr(event, a)) for a, band in self.bands
        )


@dataclass(frozen=True)
class ModelSwap:
    """One outcome of `ModelSelector.refresh`: `reference` moved from `old` to `new`, or stayed (`error`)."""

    reference: str
    old: str
    new: str
    error: str | None = None


class ModelSelector:
    """Picks the model for each event (routes, then the default) and hot-swaps promoted versions.

    `accept(model)` is the operator's compatibility check; it raises (any `Exception`, with a message saying
    what does not fit) to refuse a model. Call `open` before `for_event`.
    """

    def __init__(
        self,
        default: str,
        routes: Iterable[Route] = (),
        *,
        accept: Callable[[ServedModel], None] = lambda model: None,
        backends: Mapping[str, BackendConfig] | None = None,
    ) -> None:
        parse_ref(default)
        self.backends: dict[str, BackendConfig] = dict(backends or {})
        self.configured_default = default
        #: The reference the default model is loaded under (the pinned one while pinned).
        self.default = default
        self.routes: tuple[Route, ...] = tuple(routes)
        self._accept = accept
        self._compiled: tuple[_CompiledRoute, ...] = ()
        self._models: dict[str, ServedModel] = {}
        self._registry: ModelRegistry | None = None
        self._pinned = False
        self._refused: dict[str, int] = {}  # reference -> the promoted version refused last (reported once)
        for index, route in enumerate(self.routes):
            if route.backend is not None and route.backend not in self.backends:
                raise RouteConfigError(
                    f"routes[{index}].backend: unknown backend {route.backend!r}; "
                    f"declared: {sorted(self.backends) or 'none (add a backends section)'}"
                )

    @property
    def references(self) -> tuple[str, ...]:
        """The distinct model references in use (the default first, then routes in order)."""
        if self._pinned:
            return (self.default,)
        return tuple(dict.fromkeys([self.default, *(r.model for r in self.routes)]))

    @property
    def loaded(self) -> Mapping[str, ServedModel]:
        """The loaded model of every reference (after `open`)."""
        return self._models

    def open(self, registry: ModelRegistry, pinned: str | None = None) -> None:
        """Load (and `accept`) every referenced model; `pinned` replaces the default and every route."""
        self.close()
        self._pinned = pinned is not None
        if pinned is not None:
            parse_ref(pinned)
        self.default = pinned if pinned is not None else self.configured_default
        models: dict[str, ServedModel] = {}
        self._models = models  # filled as loaded, so `close` releases what a failed open started
        for reference in self.references:
            model = registry.load_ref(reference)
            self._accept(model)
            models[reference] = model
        for route in () if self._pinned else self.routes:
            if route.backend is not None and route.target not in models:
                models[route.target] = self._remote(registry, route, models[route.model])
        self._registry = registry
        self._compiled = () if self._pinned else tuple(_CompiledRoute.of(r) for r in self.routes)

    def _remote(self, registry: ModelRegistry, route: Route, local: ServedModel) -> RemoteModel:
        """The remote model of `route`, its identity checked against the registry (refused if it differs)."""
        assert route.backend is not None and isinstance(local, ModelHandle)
        config = self.backends[route.backend]
        remote = RemoteModel(route.backend, config, local.manifest, local if config.fallback == "local" else None)
        try:
            try:
                remote.verify()
            except RemoteCallError as exc:
                log.warning("%s cannot be checked now (%s); it is checked again before its first use, its events "
                            "fall back until then", remote.describe(), exc)
            self._accept(remote)
        except BaseException:
            remote.close()
            raise
        return remote

    @property
    def remote(self) -> dict[str, RemoteModel]:
        """The remote models in use, by `backend/name@version` (each has its own breaker and counters)."""
        return {f"{m.backend}/{m.ref}": m for m in self._models.values() if isinstance(m, RemoteModel)}

    def for_event(self, event: Any) -> ServedModel:
        """The model that scores `event`: the first matching route's, else the default's."""
        for route in self._compiled:
            if route.matches(event):
                return self._models[route.model]
        try:
            return self._models[self.default]
        except KeyError:
            raise OperatorConfigError("ModelSelector.for_event called before open()") from None

    def refresh(self) -> list[ModelSwap]:
        """Follow promotions: every unpinned reference whose `CURRENT` moved is swapped to the new version.

        Returns one `ModelSwap` per change seen (with `error` set, and the old version kept, when the new
        version cannot be loaded or is refused by `accept`; a refused version is reported once and tried again
        only after `CURRENT` moves on). Pinned references never change.
        """
        registry = self._registry
        if registry is None or self._pinned:
            return []
        swaps: list[ModelSwap] = []
        for reference, old in list(self._models.items()):
            if isinstance(old, RemoteModel):
                continue
            name, version = parse_ref(reference)
            if version is not None:
                continue
            try:
                current = registry.current(name)
            except ModelError as exc:
                swaps.append(ModelSwap(reference, old.ref, old.ref, f"{type(exc).__name__}: {exc}"))
                continue
            if current is None or current == old.version or self._refused.get(reference) == current:
                continue
            try:
                new = registry.load(name, current)
                self._accept(new)
            except Exception as exc:  # reported, the running version stays: a bad promotion never stops scoring
                self._refused[reference] = current
                swaps.append(ModelSwap(reference, old.ref, f"{name}@{current}", f"{type(exc).__name__}: {exc}"))
                continue
            self._refused.pop(reference, None)
            self._models[reference] = new
            swaps.append(ModelSwap(reference, old.ref, new.ref))
        return swaps

    def close(self) -> None:
        """Drop every loaded model (and stop the remote ones' workers)."""
        for model in self._models.values():
            if isinstance(model, RemoteModel):
                model.close()
        self._models = {}
        self._registry = None
        self._refused = {}
