"""Pipeline configuration files: one YAML per pipeline, validated once at start-up (msgspec, no unknown fields).

Every config has `pipeline: <name>` (the tag that picks its type), `topics`, `model_refresh_seconds` and `state`
(`PipelineConfigBase`); a pipeline that serves registry models has `model`, `routes` and `backends` too
(`ModelPipelineConfig`). Each pipeline's own type lives in its folder with its shipped YAML (risk:
`pipelines/risk/config.py` and `risk.yaml`; reco: `pipelines/reco/`) and is named by its `PipelineDefinition`.

`load_config(path)` returns the config of whichever pipeline the file names; anything wrong raises `ConfigError`
whose message names the file and the field path and says what was expected and what was found, e.g.
`risk.yaml: rules[2].window_minutes: expected int >= 1, got -5. Fix ...`.
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
from operators.remote.backend import BackendConfig
from operators.risk.rules import Code, Currency
from operators.routing import ModelRef, Route, check_routes
from pipelines.config_errors import explain, kind, yaml_problem
from pipelines.exceptions import ConfigError
from state.contract import RetentionPolicy

_EXAMPLE = "pipelines/risk/risk.yaml"

TopicName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9._-]{1,249}\\Z")]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class FieldError(ValueError):
    """A semantic check of one config section failed; the message starts with the field (`review: ...`)."""


class Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the config sections: immutable, no unknown fields."""


class TopicsConfig(Section, frozen=True):
    """The pipeline's Kafka topics: input, output (results) and dlq (dead letters); all distinct."""

    input: TopicName
    output: TopicName
    dlq: TopicName

    def __post_init__(self) -> None:
        if self.output == self.input:
            raise FieldError(f"output: must differ from input, both are {self.input!r}")
        if self.dlq in (self.input, self.output):
            raise FieldError(f"dlq: must differ from input and output, got {self.dlq!r}")


class StateConfig(Section, frozen=True):
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

    BASE: ClassVar[bool] = True
    topics: TopicsConfig
    model_refresh_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 2.0
    state: StateConfig = msgspec.field(default_factory=StateConfig)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("BASE", False):  # a pipeline's config (a base of configs says BASE = True)
            _CONFIG_TYPES.append(cls)

    @property
    def pipeline(self) -> str:
        """The pipeline name (the `pipeline:` tag)."""
        return str(type(self).__struct_config__.tag)


class ModelPipelineConfig(PipelineConfigBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pipeline that serves models: the model (`name` or `name@version`), routes to other models, and the model
    servers (`backends`, by name) routes may send their events to. Its subclass names `MODEL_NAME` (the registry
    name `model` must have) and `EVENT_TYPE` (what routes match on)."""

    BASE: ClassVar[bool] = True
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


def _config_union() -> Any:
    """The tagged union of every pipeline config type defined so far (`pipeline:` picks the member): those of
    the pipelines registered (`pipelines.registry` imports them before any lookup) and any imported."""
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


def load_config(path: str | os.PathLike[str], *, pipeline: str | None = None) -> Any:
    """Read and validate the pipeline config at `path` (expecting `pipeline` if given); `ConfigError` if bad."""
    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{where}: cannot read the pipeline config ({exc}); pass the path of a UTF-8 YAML file "
            f"(the shipped defaults: pipelines/<name>/<name>.yaml, e.g. {_EXAMPLE})"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {yaml_problem(exc)}; fix the YAML and start again") from None
    return parse_config(data, where, pipeline=pipeline)


def parse_config(data: Any, where: str = "<config>", *, pipeline: str | None = None) -> Any:
    """Validate already-parsed YAML/JSON `data` (as read from `where`) into a pipeline config."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping at the top level (`pipeline: risk`, `topics: ...`), "
            f"got {kind(data)}; see {_EXAMPLE} for a complete, valid example"
        )
    try:
        config: PipelineConfigBase = msgspec.convert(data, _config_union())
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


def _pattern(annotated: Any) -> str:
    return str(typing.get_args(annotated)[1].pattern)


_PATTERNS = {  # msgspec names a pattern by its regex; say what it means instead
    _pattern(Code): "a lower-case identifier ([a-z][a-z0-9_]*, at most 64 characters)",
    _pattern(ModelRef): "a model name, optionally with @version (version >= 1)",
    _pattern(Currency): "a currency code (3 upper-case letters)",
    _pattern(TopicName): "a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)",
}
