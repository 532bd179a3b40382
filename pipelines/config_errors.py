"""Error messages of the pipeline config loader: a msgspec validation error or a YAML error turned into
"field: what is wrong" (`pipelines.config` builds the sentence around it)."""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

import msgspec
import yaml

_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?\Z", re.S)
_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")
_FIELD_PREFIX = re.compile(
    r"^(?P<field>[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z0-9_]\w*(?:\[\d+\])*)*): (?P<rest>.*)\Z", re.S
)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`\Z")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`\Z")
_INVALID = re.compile(r"^Invalid (?:enum )?value (?P<value>.+)\Z")
_MISSING_VALUE = object()


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _render(tokens: list[str | int]) -> str:
    out = ""
    for token in tokens:
        out += f"[{token}]" if isinstance(token, int) else (f".{token}" if out else token)
    return out


def _tokens(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    for name, index in _TOKEN.findall(path):
        if name:
            tokens.append(name)
        elif index != "...":
            tokens.append(int(index))
        else:
            break  # msgspec does not name the dict key
    return tokens


def _value_at(data: Any, tokens: list[str | int]) -> Any:
    value = data
    for token in tokens:
        in_list = isinstance(token, int) and isinstance(value, list) and 0 <= token < len(value)
        in_dict = isinstance(token, str) and isinstance(value, dict) and token in value
        if not (in_list or in_dict):
            return _MISSING_VALUE
        value = value[token]
    return value


def _strip(tp: Any) -> Any:
    """`tp` without `Annotated` and without `None` in an optional."""
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return tp


def _members(tp: Any) -> list[type[msgspec.Struct]]:
    """The struct types `tp` stands for (one struct, or the members of a union of structs)."""
    tp = _strip(tp)
    candidates = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    return [c for c in candidates if isinstance(c, type) and issubclass(c, msgspec.Struct)]


def _pick(tp: Any, value: Any) -> Any:
    """Resolve a tagged union of structs to the member `value`'s tag names (else `tp` unchanged)."""
    members = _members(tp)
    if len(members) > 1 and isinstance(value, dict):
        for member in members:
            config = member.__struct_config__
            if config.tag_field is not None and value.get(config.tag_field) == config.tag:
                return member
    return _strip(tp)


def _expected_at(data: Any, tokens: list[str | int], root: Any) -> tuple[Any, str | None]:
    """The declared type at `tokens` (unions resolved by the data's tags) and, if the last token is a tag
    field, that field's name."""
    tp: Any = root
    value = data
    for token in tokens:
        tp = _pick(tp, value)
        members = _members(tp)
        if isinstance(token, str) and members:
            tag_fields = {m.__struct_config__.tag_field for m in members}
            if token in tag_fields:
                return tp, token
            if len(members) != 1:
                return None, None
            fields = {f.encode_name: f.type for f in msgspec.structs.fields(members[0])}
            if token not in fields:
                return None, None
            tp = fields[token]
        elif typing.get_origin(tp) in (list, tuple) and isinstance(token, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict and isinstance(token, str):
            tp = typing.get_args(tp)[1]
        else:
            return None, None
        value = _value_at(value, [token])
    return _pick(tp, value), None


def _allowed(data: Any, tokens: list[str | int], root: Any) -> str:
    """What is allowed at `tokens`: the fields of the struct there, the tags of a union, or literal values."""
    tp, tag_field = _expected_at(data, tokens, root)
    if tag_field is not None:
        tags = [str(m.__struct_config__.tag) for m in _members(tp)]
        return "one of: " + ", ".join(tags)
    tp = _strip(tp)
    if typing.get_origin(tp) is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(tp))
    members = _members(tp)
    if len(members) == 1:
        config = members[0].__struct_config__
        names = [f.encode_name for f in msgspec.structs.fields(members[0])]
        if config.tag_field is not None:
            names.insert(0, config.tag_field)
        return "allowed fields: " + ", ".join(names)
    return ""


def _shown(value: Any) -> str:
    return "nothing" if value is None else repr(value)


def explain(message: str, data: Any, root: Any, patterns: dict[str, str]) -> tuple[str, str]:
    """(field path, detail) of a msgspec validation error on `data` converted to type `root`; `patterns`
    maps a regex msgspec names to what it means."""
    match = _AT.match(message)
    what = match.group("what") if match else message
    tokens = _tokens(match.group("path") or "") if match else []
    key_error = bool(match and match.group("key"))
    prefixed = _FIELD_PREFIX.match(what)
    if prefixed:  # a semantic check: "field: detail" relative to the struct at `tokens`
        tokens += _tokens("." + prefixed.group("field"))
        return _render(tokens), prefixed.group("rest")
    if missing := _MISSING.match(what):
        tokens.append(missing.group("name"))
        allowed = _allowed(data, tokens, root)
        return _render(tokens), "required field is missing" + (f" ({allowed})" if allowed else "")
    if unknown := _UNKNOWN.match(what):
        allowed = _allowed(data, tokens, root)
        tokens.append(unknown.group("name"))
        return _render(tokens), "unknown field" + (f"; {allowed}" if allowed else "")
    detail = what.replace("`", "")
    detail = detail[:1].lower() + detail[1:]
    for pattern, meaning in patterns.items():
        detail = detail.replace(f"str matching regex {pattern!r}", meaning)
    if invalid := _INVALID.match(what):
        allowed = _allowed(data, tokens, root)
        detail = f"unknown value {invalid.group('value')}" + (f"; expected {allowed}" if allowed else "")
        return _render(tokens), detail
    value = _value_at(data, tokens)
    if key_error and isinstance(value, dict):
        return _render(tokens), f"every key must be: {detail.removeprefix('expected ')}; got keys {list(value)}"
    if value is not _MISSING_VALUE and not isinstance(value, dict | list):
        detail += f" ({_shown(value)})" if ", got " in detail else f", got {_shown(value)}"
    return _render(tokens), detail
