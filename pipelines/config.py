"""Pipeline configuration files: one YAML per pipeline, validated once at start-up (msgspec, no unknown fields).

A risk config (the shipped defaults are `pipelines/configs/risk.yaml`)::

    pipeline: risk
    topics: {input: risk.transactions, output: risk.scores, dlq: risk.dlq}
    model: risk                  # the registry's current version; `risk@1` pins one
    routes:                      # optional: the first matching route picks the model (operators.routing)
      - {code: high_value, when: {amount: {at_least: 2000}}, model: risk@2}
    model_refresh_seconds: 2     # follow promotions of unpinned models (hot-swap); 0: never
    backends:                    # optional: model servers routes may name (operators.remote.backend.BackendConfig)
      server: {url: "http://127.0.0.1:8080", protocol: http, deadline_ms: 200, fallback: local}
    thresholds: {review: 0.3, block: 0.7}
    rules:                       # operators.risk.rules: amount_above, count_in_window, country_change_within,
      - {code: burst, kind: count_in_window, count: 5, window_minutes: 10, action: review}
    state: {retention_versions: 16, ttl_hours: 720, dedup_window_hours: 24}   # optional; each field optional

A reco config has `pipeline: reco`, `topics`, `model: reco[@N]`, `k`, `idle_timeout_minutes` and `state`, and may
have `routes` and `backends` as a risk config does (a remote route steps its sessions on a model server).

`load_config(path)` returns a `RiskPipelineConfig` or `RecoPipelineConfig`; anything wrong raises
`ConfigError` whose message names the file and the field path and says what was expected and what was
found, e.g. `risk.yaml: rules[2].window_minutes: expected int >= 1, got -5. Fix ...`.
`risk_operator_from_config(cfg)` builds the `RiskOperator` a risk config describes.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union

import msgspec
import yaml

from operators.exceptions import OperatorConfigError
from operators.reco.operator import RecoOperator
from operators.reco.schemas import Click
from operators.remote.backend import BackendConfig
from operators.risk.operator import RiskOperator
from operators.risk.policy import RiskThresholds
from operators.risk.rules import AnyRule, Code, Currency, RuleSet, check_rules
from operators.risk.schemas import Transaction
from operators.routing import ModelRef, Route, check_routes
from pipelines.config_errors import explain, kind, yaml_problem
from pipelines.exceptions import ConfigError
from state.contract import RetentionPolicy

#: The folder of the shipped pipeline configs (package data).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: The shipped risk config: the defaults (`DEFAULT_RULES`, `RiskThresholds()`, the default topics).
RISK_CONFIG_PATH = CONFIG_DIR / "risk.yaml"
#: The shipped reco config (`RecoOperator` defaults and the default topics).
RECO_CONFIG_PATH = CONFIG_DIR / "reco.yaml"
_EXAMPLE = "pipelines/configs/risk.yaml"

TopicName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9._-]{1,249}\\Z")]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class FieldError(ValueError):
    """A semantic check of one config section failed; the message starts with the field (`review: ...`)."""


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the config sections: immutable, no unknown fields."""


class TopicsConfig(_Section, frozen=True):
    """The pipeline's Kafka topics: input, output (results) and dlq (dead letters); all distinct."""

    input: TopicName
    output: TopicName
    dlq: TopicName

    def __post_init__(self) -> None:
        if self.output == self.input:
            raise FieldError(f"output: must differ from input, both are {self.input!r}")
        if self.dlq in (self.input, self.output):
            raise FieldError(f"dlq: must differ from input and output, got {self.dlq!r}")


class ThresholdsConfig(_Section, frozen=True):
    """Score thresholds of the risk decision: `0 < review <= block <= 1`."""

    review: float
    block: float

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.block <= 1.0:
            raise FieldError(
                f"review: expected 0 < review <= block <= 1, got review={self.review}, block={self.block}"
            )

    def to_risk_thresholds(self) -> RiskThresholds:
        """The operator's `RiskThresholds`."""
        return RiskThresholds(review=self.review, block=self.block)


class StateConfig(_Section, frozen=True):
    """Per-key state bounds, read by every runtime, the offline scorer and the harness alike: the newest
    `retention_versions` versions are kept; `ttl_hours` (optional) is how long a key's state lives without an
    event, in event time: the next event of a key idle for longer starts it cold, as a new key's first event
    (`OperatorBase.is_expired`), and the state of keys idle for twice that is removed by the runtimes' sweep
    (`pipelines.runtimes.expiry`; `sweep_check_seconds` is when the Flink job first looks at a new key);
    `dedup_window_hours` is the idempotency window."""

    retention_versions: PositiveInt = 16
    ttl_hours: PositiveInt | None = None
    #: Flink: the shortest processing time from a key's first event to the first look at whether it is to be
    #: swept (the delay used until the event clock's pace is measured, `pipelines.runtimes.expiry`).
    sweep_check_seconds: PositiveInt = 60
    #: A re-sent event id is recognised (dropped) for this long in event time (`operators.idempotency`).
    dedup_window_hours: PositiveInt = 24
    #: ... and at most this many ids per key (8 bytes each, in every retained version).
    dedup_max_ids: PositiveInt = 10_000

    def __post_init__(self) -> None:
        if self.retention_versions < 1:
            raise FieldError(f"retention_versions: expected int >= 1, got {self.retention_versions}")
        if self.ttl_hours is not None and self.ttl_hours < 1:
            raise FieldError(f"ttl_hours: expected int >= 1 or no value, got {self.ttl_hours}")

    def retention_policy(self) -> RetentionPolicy:
        """The store's `RetentionPolicy` (the newest `retention_versions` versions per key)."""
        return RetentionPolicy(max_versions=self.retention_versions)

    @property
    def dedup_window_ms(self) -> int:
        """`dedup_window_hours` in milliseconds."""
        return self.dedup_window_hours * 3_600_000

    @property
    def ttl_ms(self) -> int | None:
        """`ttl_hours` in milliseconds, None when not set."""
        return None if self.ttl_hours is None else self.ttl_hours * 3_600_000


#: Every pipeline config type defined so far (`PipelineConfigBase` subclasses record themselves).
_CONFIG_TYPES: list[type[Any]] = []


class PipelineConfigBase(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="pipeline"
):
    """What every pipeline config has: topics, state retention and how often model promotions are followed
    (`model_refresh_seconds`, 0 = never). A pipeline's config subclasses it with `tag="<pipeline name>"`
    (a pipeline without models too) and is named as `config_type` in its `PipelineDefinition`."""

    topics: TopicsConfig
    model_refresh_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0
    state: StateConfig = msgspec.field(default_factory=StateConfig)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):  # a pipeline's config (private bases are not)
            _CONFIG_TYPES.append(cls)

    @property
    def pipeline(self) -> str:
        """The pipeline name (the `pipeline:` tag)."""
        return str(type(self).__struct_config__.tag)


class _PipelineBase(PipelineConfigBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pipeline that serves models: the model (`name` or `name@version`), routes to other models, and the model
    servers (`backends`, by name) routes may send their events to."""

    MODEL_NAME: ClassVar[str] = ""
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = msgspec.Struct

    model: ModelRef
    routes: tuple[Route, ...] = ()
    #: Model servers by name, each as `BackendConfig` fields (validated here, so errors name the backend).
    backends: dict[Code, dict[str, Any]] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        name = self.model.partition("@")[0]
        if name != self.MODEL_NAME:
            raise FieldError(
                f"model: expected {self.MODEL_NAME!r} or {self.MODEL_NAME + '@<version>'!r}, got {self.model!r}"
            )
        check_routes(self.routes, self.EVENT_TYPE)
        self.backend_configs()
        for index, route in enumerate(self.routes):
            if route.backend is not None and route.backend not in self.backends:
                raise FieldError(
                    f"routes[{index}].backend: unknown backend {route.backend!r}; declared in `backends`: "
                    f"{sorted(self.backends) or 'none'}"
                )

    def backend_configs(self) -> dict[str, BackendConfig]:
        """`backends` as `BackendConfig`s; `FieldError` naming `backends.<name>.<field>` for a bad one."""
        configs = {}
        for name, fields in self.backends.items():
            try:
                configs[name] = msgspec.convert(fields, BackendConfig)
            except (msgspec.ValidationError, ValueError) as exc:
                detail, _, path = str(exc).partition(" - at `$")
                field = path.rstrip("`")
                if not field and ": " in detail and detail.split(": ", 1)[0].isidentifier():
                    field, detail = "." + detail.split(": ", 1)[0], detail.split(": ", 1)[1]
                unknown = detail.startswith("Object contains unknown field")
                detail = detail.replace("`", "")
                raise FieldError(f"backends.{name}{field}: {detail[:1].lower()}{detail[1:]}"
                                 + ("; see operators/remote/backend.py BackendConfig" if unknown else "")) from None
        return configs

    @property
    def model_ref(self) -> str | None:
        """The default model when it pins a version (`name@version`), None when it follows the current one."""
        return self.model if "@" in self.model else None


class RiskPipelineConfig(_PipelineBase, frozen=True, tag="risk"):
    """The risk pipeline: decision thresholds and rules (in evaluation and reason order), and the model servers
    (`backends`, by name) its routes may send their events to."""

    MODEL_NAME: ClassVar[str] = "risk"
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = Transaction

    thresholds: ThresholdsConfig
    rules: tuple[AnyRule, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_rules(self.rules)

    def rule_set(self) -> RuleSet:
        """The rules as the operator's `RuleSet`."""
        return RuleSet(self.rules)


class RecoPipelineConfig(_PipelineBase, frozen=True, tag="reco"):
    """The session recommendation pipeline: `k` items per click, sessions end after `idle_timeout_minutes`."""

    MODEL_NAME: ClassVar[str] = "reco"
    EVENT_TYPE: ClassVar[type[msgspec.Struct]] = Click

    k: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    idle_timeout_minutes: PositiveInt

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.k <= 1000:
            raise FieldError(f"k: expected int in [1, 1000], got {self.k}")
        if self.idle_timeout_minutes < 1:
            raise FieldError(f"idle_timeout_minutes: expected int >= 1, got {self.idle_timeout_minutes}")

    @property
    def idle_timeout_ms(self) -> int:
        """`idle_timeout_minutes` in milliseconds."""
        return self.idle_timeout_minutes * 60_000


PipelineConfig = RiskPipelineConfig | RecoPipelineConfig


def _config_union() -> Any:
    """The tagged union of every pipeline config type defined (`pipeline:` picks the member): the built-in
    ones and those of pipelines registered so far (`pipelines.registry` imports them before any lookup)."""
    return Union[tuple(_CONFIG_TYPES)]  # noqa: UP007 - built at run time


# ------------------------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate mapping keys (plain PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike[str], *, pipeline: str | None = None) -> PipelineConfig:
    """Read and validate the pipeline config at `path` (expecting `pipeline` if given); `ConfigError` if bad."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{where}: cannot read the pipeline config ({exc}); pass the path of a UTF-8 YAML file "
            f"(the shipped defaults: {RISK_CONFIG_PATH})"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {yaml_problem(exc)}; fix the YAML and start again") from None
    return parse_config(data, where, pipeline=pipeline)


def parse_config(data: Any, where: str = "<config>", *, pipeline: str | None = None) -> PipelineConfig:
    """Validate already-parsed YAML/JSON `data` (as read from `where`) into a pipeline config."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping at the top level (`pipeline: risk`, `topics: ...`), "
            f"got {kind(data)}; see {_EXAMPLE} for a complete, valid example"
        )
    try:
        config: PipelineConfig = msgspec.convert(data, _config_union())
    except msgspec.ValidationError as exc:
        field, detail = explain(str(exc), data, _config_union(), _PATTERNS)
        raise ConfigError(
            f"{where}: {field or '(top level)'}: {detail}. Fix `{field or 'the top level'}` in {where} and start "
            f"again ({_EXAMPLE} is a complete, valid example)"
        ) from None
    except OperatorConfigError as exc:  # a check outside msgspec's reach; should not happen, but name it
        raise ConfigError(f"{where}: {exc}") from None
    if pipeline is not None and config.pipeline != pipeline:
        raise ConfigError(
            f"{where}: pipeline: expected {pipeline!r}, got {config.pipeline!r}; pass the config of the "
            f"{pipeline} pipeline"
        )
    return config


def default_config_path(pipeline: str) -> Path:
    """The shipped config of `pipeline` (`pipelines/configs/<pipeline>.yaml`); `ConfigError` if none."""
    path = CONFIG_DIR / f"{pipeline}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"no shipped config for pipeline {pipeline!r} in {CONFIG_DIR}; shipped: {shipped}")
    return path


def load_risk_config(path: str | os.PathLike[str] | None = None) -> RiskPipelineConfig:
    """The risk config at `path` (default: the shipped `risk.yaml`); `ConfigError` if bad or not a risk one."""
    config = load_config(RISK_CONFIG_PATH if path is None else path, pipeline="risk")
    assert isinstance(config, RiskPipelineConfig)
    return config


def risk_operator_from_config(cfg: RiskPipelineConfig) -> RiskOperator:
    """The `RiskOperator` of a risk config: thresholds, rules, the default model and routes (a `--model`
    given at `open` via `OperatorContext.model_ref` pins one model instead)."""
    if not isinstance(cfg, RiskPipelineConfig):
        raise ConfigError(f"risk_operator_from_config needs a risk config, got pipeline {cfg.pipeline!r}")
    return RiskOperator(
        thresholds=cfg.thresholds.to_risk_thresholds(), rules=cfg.rule_set(), model=cfg.model, routes=cfg.routes,
        dedup_window_ms=cfg.state.dedup_window_ms, dedup_max_ids=cfg.state.dedup_max_ids,
        ttl_ms=cfg.state.ttl_ms, backends=cfg.backend_configs(),
    )


def load_reco_config(path: str | os.PathLike[str] | None = None) -> RecoPipelineConfig:
    """The reco config at `path` (default: the shipped `reco.yaml`); `ConfigError` if bad or not a reco one."""
    config = load_config(RECO_CONFIG_PATH if path is None else path, pipeline="reco")
    assert isinstance(config, RecoPipelineConfig)
    return config


def reco_operator_from_config(cfg: RecoPipelineConfig) -> RecoOperator:
    """The `RecoOperator` of a reco config: k, idle timeout, the default model and routes."""
    if not isinstance(cfg, RecoPipelineConfig):
        raise ConfigError(f"reco_operator_from_config needs a reco config, got pipeline {cfg.pipeline!r}")
    return RecoOperator(k=cfg.k, idle_timeout_ms=cfg.idle_timeout_ms, model=cfg.model, routes=cfg.routes,
                        dedup_window_ms=cfg.state.dedup_window_ms,
                        dedup_max_ids=cfg.state.dedup_max_ids, ttl_ms=cfg.state.ttl_ms,
                        backends=cfg.backend_configs())


def _pattern(annotated: Any) -> str:
    return str(typing.get_args(annotated)[1].pattern)


_PATTERNS = {  # msgspec names a pattern by its regex; say what it means instead
    _pattern(Code): "a lower-case identifier ([a-z][a-z0-9_]*, at most 64 characters)",
    _pattern(ModelRef): "a model name, optionally with @version (version >= 1)",
    _pattern(Currency): "a currency code (3 upper-case letters)",
    _pattern(TopicName): "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)",
}
