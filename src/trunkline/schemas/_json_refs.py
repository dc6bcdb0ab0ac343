"""Finding the schemas inside a JSON Schema document, and resolving ``$ref`` between them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urljoin

# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
SINGLE = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")


def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every schema inside ``node`` (itself included) with its path, depth first."""
    yield path, node
    if not isinstance(node, dict):
        return
    for key in SINGLE:
        if isinstance(node.get(key), dict | bool):
            yield from walk(node[key], f"{path}/{key}")
    items = node.get("items")
    if isinstance(items, list):
        for i, item in enumerate(items):
            yield from walk(item, f"{path}/items/{i}")
    elif isinstance(items, dict | bool):
        yield from walk(items, f"{path}/items")
    for key in LISTS:
        if isinstance(node.get(key), list):
            for i, item in enumerate(node[key]):
                yield from walk(item, f"{path}/{key}/{i}")
    for key in (*MAPS, "dependencies"):
        if isinstance(node.get(key), dict):
            for name, item in node[key].items():
                if isinstance(item, dict | bool):
                    yield from walk(item, f"{path}/{key}/{_escape(name)}")


def resolve_ref(ref: str, root: Any, named: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """The schema ``ref`` points at and the document it lies in, or None if it does not resolve.

    ``root`` is the document holding the ``$ref``; ``named`` maps reference names (and the
    referenced documents' ``$id``) to documents.
    """
    base, _, fragment = ref.partition("#")
    document: Any = root
    if base:
        document = named.get(base)
        if document is None and isinstance(root, dict) and isinstance(root.get("$id"), str):
            document = named.get(urljoin(root["$id"], base))
        if document is None:
            return None
    if not fragment:
        return document, document
    if not fragment.startswith("/"):
        return None  # plain-name anchors are not supported
    target = document
    for raw in fragment[1:].split("/"):
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return None
    return target, document


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
