"""Pydantic validation errors turned into :class:`Problem` s worded for people.

Pydantic's own messages dump the input and link to its docs; here each error type gets our
wording ("expected X for 'key', found Y"), placed at the line and column where the key or
value was written. Values that came from ``${VAR}`` are never shown.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from trunkline.config._base import EnvValue
from trunkline.config._model import ConnectorSpec
from trunkline.config._problems import ERROR_TYPE, Problem
from trunkline.config._typing import (
    mapping_value,
    model_class,
    sequence_item,
    strip,
    union_member_for,
    union_members,
)
from trunkline.config._yaml import Document, KeyPath, Position

_HIDDEN_REASON = "the reason is hidden because it would show a value from the environment"


def translate(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    """One problem per error of ``exc``, raised while validating ``doc.data`` as ``model``."""
    problems = []
    for error in exc.errors(include_url=False):
        problem = _translate(error, doc, model)
        if problem is not None:
            problems.append(problem)
    return problems


def _translate(error: ErrorDetails, doc: Document, model: type[BaseModel]) -> Problem | None:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind in ("missing", "union_tag_not_found"):
        return _missing(error, doc)
    if kind == "extra_forbidden":
        return _unknown_key(loc, doc, model)
    on_key = bool(loc) and loc[-1] == "[key]"
    path = _data_path(doc.data, loc[:-1] if on_key else loc)
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    if kind == "union_tag_invalid":
        # Pydantic places this on the whole mapping; the culprit is its tag.
        discriminator = str(ctx.get("discriminator", "")).strip("'")
        if isinstance(value, Mapping) and discriminator in value:
            path, value = (*path, discriminator), value[discriminator]
    if _already_reported(doc, path):
        return None
    variables = doc.env_variables.get(path) or (
        value.variables if isinstance(value, EnvValue) else ()
    )
    at = (doc.keys if on_key else doc.values).get(path) or _nearest(doc, path)
    if kind == ERROR_TYPE and "message" in ctx:
        message = _redact(str(ctx["message"]), doc, path)
        return _problem(doc, at, message, str(ctx.get("hint", "")))
    expected = _expected(kind, ctx)
    if expected is None:
        reason = re.sub(r"^(Value error|Assertion failed), ", "", error["msg"])
        return _problem(doc, at, f"invalid value for {_label(path)}: {_redact(reason, doc, path)}")
    found = str(ctx["found"]) if "found" in ctx else _found(value, variables)
    if on_key:
        message = f"expected {expected} as a key of {_label(path[:-1])}, found {found}"
    else:
        message = f"expected {expected} for {_label(path)}, found {found}"
    hint = "" if variables else str(ctx.get("hint") or _choice_hint(kind, ctx, value))
    return _problem(doc, at, message, hint)


def _missing(error: ErrorDetails, doc: Document) -> Problem | None:
    loc = tuple(error["loc"])
    # A missing union tag names its key in the context, quoted: "'backend'".
    key = str(error.get("ctx", {}).get("discriminator", loc[-1] if loc else "")).strip("'")
    container = _data_path(doc.data, loc[:-1])
    if _already_reported(doc, container):
        return None
    where = f"in {_label(container, full=True)}" if container else "at the top level"
    at = doc.keys.get(container) or _nearest(doc, container)
    return _problem(doc, at, f"missing required key {key!r} {where}")


def _unknown_key(loc: tuple[Any, ...], doc: Document, model: type[BaseModel]) -> Problem | None:
    path = _data_path(doc.data, loc)
    if _already_reported(doc, path[:-1]):
        return None
    key = loc[-1]
    valid = _valid_keys(model, loc[:-1], doc.data)
    hint = ""
    close = difflib.get_close_matches(str(key), valid, n=1) if valid else []
    if close:
        hint = f"did you mean {close[0]!r}?"
    elif valid:
        hint = "valid keys here: " + ", ".join(valid)
    at = doc.keys.get(path) or _nearest(doc, path)
    return _problem(doc, at, f"unknown key {key!r}", hint)


def _problem(doc: Document, at: Position | None, message: str, hint: str = "") -> Problem:
    line, column = (at.line, at.column) if at else (None, None)
    return Problem(doc.path, line, column, message, hint)


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """The keys of ``loc`` that exist in the file.

    Pydantic's locations also name union members (``hub.embedded.path``) and keys that are
    missing from the file; those parts are skipped.
    """
    path: list[Any] = []
    node = data
    for part in loc:
        if part == "[key]":
            break
        if _has(node, part):
            node = _child(node, part)
            path.append(part)
    return tuple(path)


def _nearest(doc: Document, path: KeyPath) -> Position | None:
    for end in range(len(path), -1, -1):
        if (at := doc.values.get(path[:end])) is not None:
            return at
    return None


def _already_reported(doc: Document, path: KeyPath) -> bool:
    return any(path[:end] in doc.reported for end in range(len(path) + 1))


def _label(path: KeyPath, *, full: bool = False) -> str:
    """How a message names a key: the last key with any list indexes (``'tags[1]'``), or
    with ``full`` the whole dotted path (``'flows.revenue'``)."""
    if not path:
        return "the file"
    text = ""
    for index, part in enumerate(reversed(path)):
        if isinstance(part, int) and not isinstance(part, bool):
            text = f"[{part}]{text}"
        elif not full:
            return repr(f"{part}{text}")
        else:
            text = f"{part}{text}" if index == len(path) - 1 else f".{part}{text}"
    return repr(text)


def _found(value: Any, variables: tuple[str, ...]) -> str:
    if variables:
        names = ", ".join(f"${{{name}}}" for name in variables)
        return f"the value of {names} (hidden)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | float):
        return str(value)
    text = repr(str(value) if isinstance(value, str) else value)
    return text if len(text) <= 60 else text[:56] + "...'"


def _redact(text: str, doc: Document, path: KeyPath) -> str:
    """``text``, unless it contains an environment value used at or under ``path``.

    For wording we do not control (a plugin's own checks), the only safe test is to look.
    """
    for where, secrets in doc.env_secrets.items():
        if where[: len(path)] == path and any(secret in text for secret in secrets):
            return _HIDDEN_REASON
    return text


def _choices(expected: str) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", expected)


def _choice_hint(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    if kind not in ("literal_error", "enum", "union_tag_invalid") or not isinstance(value, str):
        return ""
    choices = _choices(str(ctx.get("expected") or ctx.get("expected_tags") or ""))
    close = difflib.get_close_matches(value, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else ""


_PLAIN_EXPECTED: dict[str, str] = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "path_type": "a path",
    "none_required": "null",
}

_CONTEXT_EXPECTED: dict[str, Callable[[Mapping[str, Any]], str]] = {
    ERROR_TYPE: lambda ctx: str(ctx["expected"]),
    "literal_error": lambda ctx: str(ctx["expected"]),
    "enum": lambda ctx: str(ctx["expected"]),
    "union_tag_invalid": lambda ctx: f"one of {ctx['expected_tags']}",
    "greater_than": lambda ctx: f"a value > {ctx['gt']}",
    "greater_than_equal": lambda ctx: f"a value >= {ctx['ge']}",
    "less_than": lambda ctx: f"a value < {ctx['lt']}",
    "less_than_equal": lambda ctx: f"a value <= {ctx['le']}",
    "string_too_short": lambda ctx: (
        "a non-empty string"
        if ctx["min_length"] == 1
        else f"a string of at least {ctx['min_length']} characters"
    ),
    "string_too_long": lambda ctx: f"a string of at most {ctx['max_length']} characters",
    "string_pattern_mismatch": lambda ctx: f"a string matching {ctx['pattern']!r}",
    "too_short": lambda ctx: f"at least {ctx['min_length']} items",
    "too_long": lambda ctx: f"at most {ctx['max_length']} items",
}


def _expected(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """What an error type says was expected; None for errors worded by their validator."""
    if kind in _PLAIN_EXPECTED:
        return _PLAIN_EXPECTED[kind]
    describe = _CONTEXT_EXPECTED.get(kind)
    if describe is None:
        return None
    try:
        return describe(ctx)
    except KeyError:
        return None


def _valid_keys(root: type[BaseModel], loc: tuple[Any, ...], data: Any) -> list[str]:
    """The keys allowed in the mapping at pydantic location ``loc``, following the models."""
    annotation: Any = root
    discriminator: str | None = None
    node = data
    for part in loc:
        bare = strip(annotation)[0]
        model = _model_at(bare, node)
        if model is not None:
            if part not in model.model_fields and discriminator is not None:
                discriminator = None  # a union member's tag: the model stays the same
                continue
            field = model.model_fields.get(part) or next(
                (f for f in model.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            annotation = field.annotation
            discriminator = field.discriminator if isinstance(field.discriminator, str) else None
        elif (members := union_members(bare)) and discriminator is not None:
            annotation = union_member_for(members, discriminator, part)
            discriminator = None
            if annotation is None:
                return []
            continue
        elif (value := mapping_value(bare)) is not None:
            annotation = value
        elif (item := sequence_item(bare)) is not None:
            annotation = item
        else:
            return []
        node = _child(node, part)
    bare = strip(annotation)[0]
    model = _model_at(bare, node)
    if model is None:
        return []
    keys = [field.alias or name for name, field in model.model_fields.items()]
    if isinstance(bare, type) and issubclass(bare, ConnectorSpec):
        keys.insert(0, "type")  # beside the connector's own settings
    return keys


def _model_at(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The model validating ``node``; for a connector entry, its connector's settings model."""
    model = model_class(annotation)
    if model is not None and issubclass(model, ConnectorSpec):
        type_name = node.get("type") if isinstance(node, Mapping) else None
        return model.settings_model(type_name)
    return model


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, Mapping):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None
