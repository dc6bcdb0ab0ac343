"""The JSON Schema a contract registers under ``<topic>-value`` (Confluent's TopicNameStrategy).

The registered schema carries the structure: types, which fields are required, which may be
null, descriptions. It is closed (``additionalProperties: false``), as the hub enforces:
a field the contract does not list is a violation. Value constraints (ranges, patterns,
accepted values) stay in the contract: tightening them is a contract change, not a schema
change, and must not be refused by the subject's compatibility level.

Under Confluent's rules for closed models, adding an optional property is BACKWARD
compatible, and removing one or adding a required one is not, which is what
``trunkline contract diff`` calls breaking too.
"""

from __future__ import annotations

import json
from typing import Any

from trunkline.contracts._model import Contract, Items, Property

_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string", "format": "date-time"},
    "time": {"type": "string", "format": "time"},
    "object": {"type": "object"},
    "array": {"type": "array"},
}


def subject_for(topic: str) -> str:
    """Confluent's TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


def json_schema(contract: Contract) -> dict[str, Any]:
    """The contract's records as a JSON Schema (draft-07) document."""
    obj = contract.object
    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": obj.name,
        "type": "object",
    }
    if obj.description:
        schema["description"] = obj.description
    schema["properties"] = {p.name: _property(p, nullable=not p.not_null) for p in obj.properties}
    required = [p.name for p in obj.properties if p.not_null]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def json_schema_text(contract: Contract) -> str:
    return json.dumps(json_schema(contract), sort_keys=False)


def _property(element: Property | Items, *, nullable: bool) -> dict[str, Any]:
    out: dict[str, Any] = dict(_TYPES.get(element.logical_type or "", {}))
    if element.description:
        out["description"] = element.description
    if element.logical_type == "object" and element.properties:
        out["properties"] = {
            p.name: _property(p, nullable=not p.not_null) for p in element.properties
        }
        required = [p.name for p in element.properties if p.not_null]
        if required:
            out["required"] = required
    if element.logical_type == "array" and element.items is not None:
        out["items"] = _property(element.items, nullable=False)
    if nullable and "type" in out:
        out["type"] = [out["type"], "null"]
    return out
