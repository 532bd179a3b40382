"""Pipeline config files: the shipped risk.yaml loads and means today's defaults; every bad config raises a
ConfigError that names the file and the field path (and nothing else escapes, whatever the YAML holds).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.registry import DEFAULT_ROOT, REGISTRY_ENV, ModelRegistry
from models.synthetic import generate_transactions
from operators.contract import OperatorContext
from operators.reco.operator import DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_K
from operators.risk.operator import RISK_STATE_CODEC, RiskOperator
from operators.risk.policy import RiskThresholds
from operators.risk.rules import DEFAULT_RULES, AmountAbove, CountInWindow, CountryChangeWithin, RuleSet
from operators.risk.schemas import Transaction
from pipelines.config import load_config, parse_config
from pipelines.exceptions import ConfigError
from pipelines.reco.config import RECO_CONFIG_PATH, RecoPipelineConfig, load_reco_config, reco_operator_from_config
from pipelines.reco.definition import RECO
from pipelines.risk.config import RISK_CONFIG_PATH, RiskPipelineConfig, load_risk_config, risk_operator_from_config
from pipelines.risk.definition import RISK
from state import MemoryVersionedStore
from state.contract import RetentionPolicy

SHIPPED: dict[str, Any] = yaml.safe_load(RISK_CONFIG_PATH.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: Any, name: str = "risk.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- the shipped file


def test_shipped_risk_config_loads_and_is_todays_behaviour() -> None:
    config = load_config(RISK_CONFIG_PATH)
    assert isinstance(config, RiskPipelineConfig)
    assert config.pipeline == "risk"
    assert config.rules == DEFAULT_RULES
    assert config.thresholds.to_risk_thresholds() == RiskThresholds()
    assert (config.topics.input, config.topics.output, config.topics.dlq) == (
        "risk.transactions", "risk.scores", "risk.dlq"
    )
    assert RISK.topics == config.topics  # the registry's default topics are the shipped config's
    assert config.state.retention_policy() == RISK.retention == RetentionPolicy(max_versions=16)
    assert config.state.ttl_ms is None
    assert config.model == "risk" and config.model_ref is None
    assert load_risk_config() == config
    assert RISK.default_config == RISK_CONFIG_PATH  # shipped in the pipeline's own folder
    assert RISK_CONFIG_PATH.parent.name == "risk" and RECO.default_config.parent.name == "reco"


def test_operator_from_the_shipped_config_scores_like_the_default_operator() -> None:
    operator = risk_operator_from_config(load_risk_config())
    assert isinstance(operator, RiskOperator)
    assert operator.rules == RuleSet(DEFAULT_RULES) and operator.thresholds == RiskThresholds()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(REGISTRY_ENV, raising=False)
        registry = ModelRegistry(DEFAULT_ROOT)
    outputs = []
    for candidate in (operator, RiskOperator()):
        candidate.open(OperatorContext(registry=registry))
        store = MemoryVersionedStore(codec=RISK_STATE_CODEC)
        lines = []
        for record in generate_transactions(400, seed=9):
            event = msgspec.convert({k: v for k, v in record.items() if k not in ("label", "pattern")}, Transaction)
            result = next(iter(candidate.process(event, store.key(event.account_id), None)))
            lines.append(msgspec.json.encode(msgspec.structs.replace(result, scored_at=0)))
        outputs.append(lines)
    assert outputs[0] == outputs[1]


def test_the_commented_rule_examples_in_the_shipped_file_are_valid() -> None:
    examples = [
        yaml.safe_load(line.split("#", 1)[1].strip().removeprefix("- "))
        for line in RISK_CONFIG_PATH.read_text(encoding="utf-8").splitlines()
        if re.match(r"^#\s+- \{code:", line) and "kind:" in line
    ]
    assert len(examples) == 3
    config = parse_config({**SHIPPED, "rules": examples}, "risk.yaml")
    assert isinstance(config, RiskPipelineConfig)
    assert [type(rule) for rule in config.rules] == [AmountAbove, CountInWindow, CountryChangeWithin]


def test_the_commented_route_examples_in_the_shipped_files_are_valid() -> None:
    for path, pipeline in ((RISK_CONFIG_PATH, "risk"), (RECO_CONFIG_PATH, "reco")):
        text = path.read_text(encoding="utf-8")
        examples = [
            yaml.safe_load(line.split("#", 1)[1].strip().removeprefix("- "))
            for line in text.splitlines()
            if re.match(r"^#\s+- \{code:", line) and "when:" in line
        ]
        assert examples, path
        config = parse_config({**yaml.safe_load(text), "routes": examples}, path.name, pipeline=pipeline)
        assert [route.code for route in config.routes] == [e["code"] for e in examples]


def test_shipped_reco_config_loads_and_builds_the_default_operator() -> None:
    config = load_reco_config()
    assert isinstance(config, RecoPipelineConfig)
    assert (config.topics.input, config.topics.output, config.topics.dlq) == (
        "reco.clicks", "reco.recommendations", "reco.dlq"
    )
    assert RECO.topics == config.topics
    assert config.state.retention_policy() == RECO.retention
    operator = reco_operator_from_config(config)
    assert (operator.k, operator.idle_timeout_ms) == (DEFAULT_K, DEFAULT_IDLE_TIMEOUT_MS)
    assert config.routes == () and config.model == "reco" and config.model_refresh_seconds == 2.0


def test_a_config_with_every_rule_kind_and_options(tmp_path: Path) -> None:
    data = copy.deepcopy(SHIPPED)
    data["model"] = "risk@1"
    data["state"] = {"retention_versions": 4, "ttl_hours": 48}
    data["rules"] = [
        {"code": "big", "kind": "amount_above", "amount": 1000, "per_currency": {"JPY": 150000}, "action": "block"},
        {"code": "burst", "kind": "count_in_window", "count": 5, "window_minutes": 10},
        {"code": "travel", "kind": "country_change_within", "window_minutes": 60},
        {"code": "takeover", "kind": "new_device_and_country"},
        {"code": "z", "kind": "feature_at_least", "feature": "amount_z", "threshold": 3},
    ]
    config = load_config(_write(tmp_path, data), pipeline="risk")
    assert isinstance(config, RiskPipelineConfig)
    assert config.model_ref == "risk@1"
    assert config.state.retention_policy() == RetentionPolicy(max_versions=4) and config.state.ttl_ms == 48 * 3_600_000
    assert [rule.code for rule in config.rules] == ["big", "burst", "travel", "takeover", "z"]
    assert config.rules[0] == AmountAbove(code="big", amount=1000.0, per_currency={"JPY": 150000.0}, action="block")
    operator = risk_operator_from_config(config)
    assert operator.rules.window_ms == 10 * 60_000
    assert [rule.code for rule in operator.rules] == ["big", "burst", "travel", "takeover", "z"]


def test_a_reco_config(tmp_path: Path) -> None:
    data = {
        "pipeline": "reco",
        "topics": {"input": "reco.clicks", "output": "reco.items", "dlq": "reco.dlq"},
        "model": "reco",
        "k": 10,
        "idle_timeout_minutes": 30,
    }
    config = load_config(_write(tmp_path, data, "reco.yaml"))
    assert isinstance(config, RecoPipelineConfig)
    assert (config.pipeline, config.k, config.idle_timeout_ms, config.model_ref) == ("reco", 10, 30 * 60_000, None)
    with pytest.raises(ConfigError, match=r"reco\.yaml: k: expected int >= 1, got 0"):
        load_config(_write(tmp_path, {**data, "k": 0}, "reco.yaml"))
    with pytest.raises(ConfigError, match=r"reco\.yaml: pipeline: expected 'risk', got 'reco'"):
        load_config(_write(tmp_path, data, "reco.yaml"), pipeline="risk")
    with pytest.raises(ConfigError, match="needs a risk config"):
        risk_operator_from_config(config)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- bad configs


def _rule(i: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        data["rules"][i].update(changes)

    return mutate


def _add_rule(rule: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["rules"].append(rule)


def _set(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return mutate


def _drop(*path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


# (id, mutation of the shipped config, the field path the error must name, a piece of the detail)
BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("unknown_top_field", _set("retries", value=3), "retries", "unknown field; allowed fields: pipeline"),
    ("unknown_rule_field", _rule(1, windw=3), "rules[1].windw", "unknown field; allowed fields: kind"),
    ("unknown_section_field", _set("thresholds", "warn", value=0.1), "thresholds.warn", "unknown field"),
    ("wrong_type_threshold", _set("thresholds", "review", value="high"), "thresholds.review", "expected float"),
    ("wrong_type_rules", _set("rules", value={"a": 1}), "rules", "expected array, got object"),
    ("wrong_type_bool_as_int", _set("state", "retention_versions", value=True), "state.retention_versions",
     "expected int, got bool"),
    ("wrong_type_rule_threshold", _rule(0, threshold="4"), "rules[0].threshold", "expected float, got str"),
    ("negative_window", _add_rule({"code": "b", "kind": "count_in_window", "count": 3, "window_minutes": -5}),
     "rules[4].window_minutes", "expected int >= 1, got -5"),
    ("zero_window", _add_rule({"code": "t", "kind": "country_change_within", "window_minutes": 0}),
     "rules[4].window_minutes", "expected int >= 1, got 0"),
    ("huge_window", _add_rule({"code": "t", "kind": "country_change_within", "window_minutes": 10**6}),
     "rules[4].window_minutes", "expected int <= 10080"),
    ("count_above_cap", _add_rule({"code": "b", "kind": "count_in_window", "count": 500, "window_minutes": 5}),
     "rules[4].count", "expected int <= 128"),
    ("review_above_block", _set("thresholds", value={"review": 0.8, "block": 0.3}), "thresholds.review",
     "expected 0 < review <= block <= 1, got review=0.8, block=0.3"),
    ("threshold_zero", _set("thresholds", "review", value=0.0), "thresholds.review", "0 < review"),
    ("threshold_nan", _set("thresholds", "block", value=float("nan")), "thresholds.review", "block=nan"),
    ("unknown_rule_kind", _rule(0, kind="amount_over"), "rules[0].kind",
     "unknown value 'amount_over'; expected one of: amount_above, count_in_window"),
    ("missing_rule_kind", lambda d: d["rules"][0].pop("kind"),
     "rules[0].kind", "required field is missing (one of: amount_above"),
    ("unknown_feature", _rule(0, feature="amount_zz"), "rules[0].feature", "unknown feature 'amount_zz'; use one of"),
    ("unknown_also_feature", _rule(0, also={"hour_of_day": 1.0}), "rules[0].also.hour_of_day", "unknown feature"),
    ("duplicate_code", _rule(2, code="amount_far_above_norm"), "rules[2].code", "duplicate code"),
    ("reserved_code", _rule(2, code="model_high_score"), "rules[2].code", "reserved"),
    ("bad_code", _rule(0, code="Amount Far"), "rules[0].code", "expected a lower-case identifier"),
    ("bad_action", _rule(0, action="deny"), "rules[0].action", "unknown value 'deny'; expected one of: review, block"),
    ("amount_without_limit", _add_rule({"code": "a", "kind": "amount_above"}), "rules[4].amount", "give `amount`"),
    ("negative_amount", _add_rule({"code": "a", "kind": "amount_above", "amount": -1}), "rules[4].amount",
     "expected a finite number > 0, got -1"),
    ("negative_currency_limit", _add_rule({"code": "a", "kind": "amount_above", "per_currency": {"EUR": -2.0}}),
     "rules[4].per_currency.EUR", "expected a finite number > 0, got -2.0"),
    ("bad_currency_key", _add_rule({"code": "a", "kind": "amount_above", "per_currency": {"eur": 2.0}}),
     "rules[4].per_currency", "currency code"),
    ("model_of_another_pipeline", _set("model", value="reco"), "model", "expected 'risk' or 'risk@<version>'"),
    ("model_version_zero", _set("model", value="risk@0"), "model", "optionally with @version"),
    ("missing_topics", _drop("topics"), "topics", "required field is missing (allowed fields: input, output, dlq)"),
    ("missing_rules", _drop("rules"), "rules", "required field is missing"),
    ("same_topics", _set("topics", "dlq", value="risk.scores"), "topics.dlq", "must differ"),
    ("bad_topic_name", _set("topics", "input", value="risk transactions"), "topics.input", "Kafka topic name"),
    ("zero_retention", _set("state", "retention_versions", value=0), "state.retention_versions",
     "expected int >= 1, got 0"),
    ("negative_ttl", _set("state", "ttl_hours", value=-1), "state.ttl_hours", "expected int >= 1, got -1"),
    ("unknown_pipeline", _set("pipeline", value="fraud"), "pipeline", "unknown value 'fraud'; expected one of: "),
    ("missing_pipeline", _drop("pipeline"), "pipeline", "required field is missing"),
    ("reco_field_in_risk", _set("k", value=5), "k", "unknown field"),
    ("route_unknown_attribute", _set("routes", value=[{"code": "r", "when": {"colour": ["red"]}, "model": "risk@2"}]),
     "routes[0].when.colour", "Transaction has no attribute 'colour'"),
    ("route_empty_values", _set("routes", value=[{"code": "r", "when": {"country": []}, "model": "risk@2"}]),
     "routes[0].when.country", "the list of values is empty"),
    ("route_no_conditions", _set("routes", value=[{"code": "r", "when": {}, "model": "risk@2"}]),
     "routes[0].when", "at least one attribute condition"),
    ("route_inverted_band", _set("routes", value=[
        {"code": "r", "when": {"amount": {"at_least": 10, "below": 5}}, "model": "risk@2"}]),
     "routes[0].when.amount.below", "must be > at_least"),
    ("route_unknown_band_field", _set("routes", value=[
        {"code": "r", "when": {"amount": {"above": 10}}, "model": "risk@2"}]),
     "routes[0].when.amount.above", "unknown field; allowed: at_least, below"),
    ("route_bad_model", _set("routes", value=[{"code": "r", "when": {"country": ["BR"]}, "model": "Risk 2"}]),
     "routes[0].model", "a model name"),
    ("route_duplicate_code", _set("routes", value=[
        {"code": "r", "when": {"country": ["BR"]}, "model": "risk@2"},
        {"code": "r", "when": {"country": ["AR"]}, "model": "risk@2"}]),
     "routes[1].code", "duplicate route code"),
    ("negative_refresh", _set("model_refresh_seconds", value=-1), "model_refresh_seconds",
     "expected float >= 0.0, got -1"),
]


@pytest.mark.parametrize(("mutate", "field", "detail"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_configs_raise_a_config_error_naming_the_file_and_field(
    mutate: Callable[[dict[str, Any]], None], field: str, detail: str, tmp_path: Path
) -> None:
    data = copy.deepcopy(SHIPPED)
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert f"risk.yaml: {field}: " in message
    assert detail in message, message
    assert f"Fix `{field}` in {path}" in message  # says what to do


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping at the top level"),
        ("- pipeline: risk\n", "got a list"),
        ("pipeline: [risk\n", "not valid YAML: line 2"),
        ("pipeline: risk\npipeline: reco\n", "duplicate key 'pipeline'"),
        ("pipeline: risk\ntopics: {input: a, input: b}\n", "duplicate key 'input'"),
        ("just a string\n", "expected a mapping at the top level"),
    ],
)
def test_unreadable_files_raise_config_errors(text: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "risk.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(expected)) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_missing_and_binary_files_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the pipeline config"):
        load_config(tmp_path / "absent.yaml")
    binary = tmp_path / "risk.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(binary)


YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=12), st.integers(0, 3)), children, max_size=4),
    ),
    max_leaves=20,
)
KNOWN_KEYS = st.sampled_from(["pipeline", "topics", "model", "thresholds", "rules", "state", "k", "kind"])


@settings(max_examples=300, deadline=None)
@given(
    replace=st.dictionaries(KNOWN_KEYS, YAML_VALUES, max_size=3),
    rule=st.dictionaries(st.sampled_from(["code", "kind", "count", "window_minutes", "amount", "per_currency",
                                          "feature", "threshold", "also", "action"]), YAML_VALUES, max_size=5),
)
def test_any_yaml_gives_a_config_or_a_config_error(replace: dict[str, Any], rule: dict[str, Any]) -> None:
    data = {**copy.deepcopy(SHIPPED), **replace}
    if isinstance(data.get("rules"), list):
        data["rules"] = [*data["rules"], rule]
    try:
        config = parse_config(data, "risk.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("risk.yaml: ")
    else:
        assert isinstance(config, RiskPipelineConfig | RecoPipelineConfig)


def _with_backends(backends: dict[str, Any], routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = yaml.safe_load(RISK_CONFIG_PATH.read_text(encoding="utf-8"))
    return {**data, "backends": backends, "routes": routes or []}


@pytest.mark.parametrize(("backend", "field", "detail"), [
    ({"url": "http://127.0.0.1:1", "protocol": "grpc"}, "backends.server.url", "HOST:PORT"),
    ({"url": "http://127.0.0.1:1", "deadline_ms": 0}, "backends.server.deadline_ms", "int >= 1"),
    ({"url": "http://h:1", "fallback": "maybe"}, "backends.server.fallback", "'maybe'"),
    ({"url": "http://h:1", "fallbak": "local"}, "backends.server", "unknown field fallbak"),
])
def test_a_bad_backend_is_named_with_its_field(backend: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_with_backends({"server": backend}), "risk.yaml")
    assert f"risk.yaml: {field}: " in str(refused.value) and detail in str(refused.value)


def test_routes_name_declared_backends_and_the_operator_gets_them() -> None:
    route = {"code": "big", "when": {"amount": {"at_least": 200.0}}, "model": "risk-large@1", "backend": "server"}
    with pytest.raises(ConfigError, match=r"routes\[0\]\.backend: unknown backend 'server'"):
        parse_config(_with_backends({}, [route]), "risk.yaml")
    config = parse_config(_with_backends({"server": {"url": "grpc-host:8081", "protocol": "grpc"}}, [route]))
    assert isinstance(config, RiskPipelineConfig)
    operator = risk_operator_from_config(config)
    assert operator._selector.backends["server"].url == "grpc-host:8081"
    assert operator._selector.routes[0].target == "risk-large@1~server"


def test_a_reco_config_declares_backends_its_routes_name() -> None:
    data = yaml.safe_load(RECO_CONFIG_PATH.read_text(encoding="utf-8"))
    route = {"code": "remote", "when": {"action": ["view"]}, "model": "reco@1", "backend": "server"}
    with pytest.raises(ConfigError, match=r"routes\[0\]\.backend: unknown backend 'server'"):
        parse_config({**data, "routes": [route]}, "reco.yaml")
    with pytest.raises(ConfigError, match=r"reco\.yaml: backends\.server\.url: "):
        parse_config({**data, "backends": {"server": {"url": "h:1"}}, "routes": [route]}, "reco.yaml")
    config = parse_config({**data, "backends": {"server": {"url": "h:8081", "protocol": "grpc"}}, "routes": [route]})
    assert isinstance(config, RecoPipelineConfig)
    operator = reco_operator_from_config(config)
    assert operator._selector.backends["server"].url == "h:8081"
    assert operator._selector.routes[0].target == "reco@1~server"
