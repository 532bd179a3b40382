"""The pipeline registry: every pipeline is declared once, as a `PipelineDefinition`, and every command and
runtime (the CLI's choices, publish, score, run, replay, backtest, training, evaluation, the Flink function,
the offline scorer) reads it from here by name.

Pipelines are discovered on first use, without this module naming any: every installed package's entry points
in the group `streamscore.pipelines` (`name = "module:DEFINITION"`; streamscore's own `pyproject.toml` declares
risk and reco, from `pipelines.risk.definition` and `pipelines.reco.definition`), then the modules named in the
environment variable `STREAMSCORE_PIPELINES` (comma-separated, e.g. `mycompany.pipelines.churn`: importing such a
module calls `register(...)`, for code that is not an installed package). The variable is inherited by the Flink
JVM, whose embedded Python looks pipelines up by name too, so a job runs a plugin pipeline unchanged.

A definition is cheap to import: what needs numpy or onnxruntime (the operator, its state codec) is behind
callables that import on first call, so `streamscore --help` and the job's client stay light.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from pipelines.exceptions import ConfigError
from state.contract import RetentionPolicy

if TYPE_CHECKING:
    from operators.contract import Operator
    from operators.decoding import EventDecoder
    from pipelines.backtest.report import DiffOutcome
    from pipelines.loop.spec import LoopSpec
    from state.codec import Codec

#: Environment variable: comma-separated modules that register more pipelines when imported.
PLUGINS_ENV = "STREAMSCORE_PIPELINES"
#: The entry-point group installed packages declare their pipelines in.
ENTRY_POINT_GROUP = "streamscore.pipelines"


@dataclass(frozen=True)
class PipelineDefinition:
    """Everything about one pipeline that a command or runtime needs, declared in one place.

    - `key_field`: the event field that keys state (read by Flink SQL before the shuffle; `key_of` reads it
      from a decoded event);
    - `decoder`: a new validating decoder (raw bytes -> event or `Rejection`);
    - `config_type`: the config schema (a msgspec Struct tagged with `pipeline: <name>`, a subclass of
      `pipelines.config.PipelineConfigBase`); `default_config`: the shipped YAML, which holds the default topics;
    - `operator_from_config`: a new, unopened operator for a validated config;
    - `state_codec`: the codec of the operator's per-key state (called once per runtime);
    - `result_key`: the Kafka key of a result;
    - `retention` (a property, not a field): versions kept per key, from the shipped config's `state` section
      (`retention_versions`), the one place retention is set (a `--config` file may set another);
    - `generate(n, seed)`: synthetic events (dicts) for `publish --events`, or None; `scenarios`: names of
      variants it also makes, `generate(n, seed, scenario=NAME)` (`publish --scenario NAME`);
    - `train(seed, registry, *, events, progress, k)` -> new model version, and
      `evaluate(version, seed, events, *, registry, progress)` -> `Evaluation`: the model hooks, or None
      (`streamscore models train|evaluate` offer the pipelines that have them);
    - `backtest_diff(production, shadow, window, *, k, title, report_dir)` -> `DiffOutcome`: how a backtest
      compares the shadow's results with production's (None: whole results, `pipelines.backtest.report`);
    - `loop`: the pipeline's part of the closed loop (`pipelines.loop.spec.LoopSpec`), or None (`streamscore
      loop|dataset|drift` and `publish feedback` offer the pipelines that have one).
    """

    name: str
    key_field: str
    decoder: Callable[[], EventDecoder[Any]]
    key_of: Callable[[Any], str]
    config_type: type[Any]
    default_config: Path
    operator_from_config: Callable[[Any], Operator[Any, Any, Any]]
    state_codec: Callable[[], Codec[Any]]
    result_key: Callable[[Any], str]
    generate: Callable[..., list[dict[str, object]]] | None = None
    scenarios: tuple[str, ...] = ()
    train: Callable[..., Any] | None = None
    evaluate: Callable[..., Any] | None = None
    backtest_diff: Callable[..., DiffOutcome] | None = None
    loop: LoopSpec | None = None

    @property
    def retention(self) -> RetentionPolicy:
        """Versions kept per key by the shipped config (`state.retention_versions`)."""
        policy: RetentionPolicy = self.load_config().state.retention_policy()
        return policy

    def load_config(self, path: Path | None = None) -> Any:
        """The validated config at `path` (default: the shipped one); `ConfigError` if bad or another pipeline's."""
        from pipelines.config import load_config

        return load_config(self.default_config if path is None else path, pipeline=self.name)

    def operator(self, config: Path | None = None) -> Operator[Any, Any, Any]:
        """A new (unopened) operator as the config at `config` describes it (default: the shipped config)."""
        return self.operator_from_config(self.load_config(config))

    def encode_result(self, result: msgspec.Struct) -> bytes:
        """The result as JSON bytes (field order fixed by the schema, so identical results are identical bytes)."""
        return msgspec.json.encode(result)

    @property
    def topics(self) -> Any:
        """The default topics (`input`, `output`, `dlq`), from the shipped config."""
        return self.load_config().topics


_REGISTRY: dict[str, PipelineDefinition] = {}
_LOADED = False
_LOCK = threading.RLock()


def register(definition: PipelineDefinition) -> PipelineDefinition:
    """Add `definition` to the registry (again with the same name: replaced); returns it."""
    if not definition.name.isidentifier():
        raise ValueError(f"a pipeline name must be an identifier, got {definition.name!r}")
    with _LOCK:
        _REGISTRY[definition.name] = definition
    return definition


def _ensure_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True
        try:
            _load_entry_points()
        except BaseException:
            _LOADED = False
            raise
        for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                _LOADED = False
                raise ConfigError(
                    f"{PLUGINS_ENV} names {module!r}, which cannot be imported ({exc}); fix the module name "
                    "or put its folder on PYTHONPATH"
                ) from None


def _load_entry_points() -> None:
    """Register the `PipelineDefinition` every entry point of `ENTRY_POINT_GROUP` names."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    if not found:
        raise ConfigError(
            f"no pipeline is installed (no entry point in group {ENTRY_POINT_GROUP!r}): streamscore's own package "
            "declares risk and reco; install it (`make setup`, or `pip install -e .` in the checkout)"
        )
    for point in found:
        definition = point.load()
        if not isinstance(definition, PipelineDefinition) or definition.name != point.name:
            raise ConfigError(f"entry point {point.name} = {point.value!r} (group {ENTRY_POINT_GROUP!r}) must name "
                              f"the PipelineDefinition of pipeline {point.name!r}, got {definition!r}")
        register(definition)


def get(name: str) -> PipelineDefinition:
    """The definition of pipeline `name`; a `ConfigError` naming the known pipelines otherwise."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pipeline {name!r}; known pipelines: {', '.join(pipeline_names())}") from None


def pipeline_names() -> list[str]:
    """The registered pipelines, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def loop_pipelines() -> list[str]:
    """The registered pipelines that declare a closed loop, sorted."""
    return [name for name in pipeline_names() if _REGISTRY[name].loop is not None]


def definitions() -> list[PipelineDefinition]:
    """Every registered pipeline, sorted by name."""
    return [_REGISTRY[name] for name in pipeline_names()]
