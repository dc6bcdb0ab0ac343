"""Parsing, identity and transitive checks of Avro and JSON Schema, without a store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trunkline.errors import InvalidCompatibility, InvalidSchema
from trunkline.schemas import (
    FORMATS,
    Compatibility,
    JsonPolicy,
    SchemaReference,
    SchemaType,
    check_compatibility,
    diff,
)
from trunkline.schemas._format import ParsedSchema, ResolvedReference


def avro(document: Any, refs: list[ResolvedReference] | None = None) -> ParsedSchema:
    text = document if isinstance(document, str) else json.dumps(document)
    return FORMATS[SchemaType.AVRO].parse(text, refs or [])


def jsonschema(document: Any, refs: list[ResolvedReference] | None = None) -> ParsedSchema:
    return FORMATS[SchemaType.JSON].parse(json.dumps(document), refs or [])


def record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}', "'Nope'"),
        ('{"type": "record", "name": "1R", "fields": []}', "record name '1R'"),
        (
            '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"},'
            ' {"name": "a", "type": "long"}]}',
            "two fields called 'a'",
        ),
        ('["int", "int"]', "two branches of type 'int'"),
        ('["int", ["null"]]', "may not hold another union"),
        ('{"type": "enum", "name": "E", "symbols": ["A", "A"]}', "unique"),
        ('{"type": "enum", "name": "E", "symbols": ["A"], "default": "Z"}', "symbols"),
        ('{"type": "fixed", "name": "F"}', "'size'"),
        (
            '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int", '
            '"default": "x"}]}',
            "Default value",
        ),
    ],
)
def test_bad_avro_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidSchema, match="invalid Avro schema") as info:
        avro(text)
    assert message in str(info.value)


def test_avro_identity_ignores_docs_order_and_whitespace() -> None:
    one = avro(
        {
            "type": "record",
            "name": "R",
            "namespace": "shop",
            "doc": "x",
            "fields": [{"name": "a", "type": {"type": "int"}, "doc": "y"}],
        }
    )
    two = avro('{"fields":[{"type":"int","name":"a"}],"name":"shop.R","type":"record"}')
    assert (
        one.canonical
        == two.canonical
        == ('{"name":"shop.R","type":"record","fields":[{"name":"a","type":"int"}]}')
    )


def test_avro_identity_keeps_what_resolution_reads() -> None:
    plain = avro(record({"name": "a", "type": "int"}))
    with_default = avro(record({"name": "a", "type": "int", "default": 0}))
    assert plain.canonical != with_default.canonical
    dec = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    wider = {**dec, "precision": 12}
    assert avro(dec).canonical != avro(wider).canonical


def test_avro_references_provide_named_types() -> None:
    money = avro(
        {
            "type": "record",
            "name": "Money",
            "namespace": "shop",
            "fields": [{"name": "cents", "type": "long"}],
        }
    )
    ref = ResolvedReference(SchemaReference("shop.Money", "money-value", 1), money)
    order = avro(record({"name": "total", "type": "shop.Money"}, name="Order"), [ref])
    assert "shop.Money" in order.named
    with pytest.raises(InvalidSchema, match="already defined by a reference"):
        avro({"type": "record", "name": "Money", "namespace": "shop", "fields": []}, [ref])
    with pytest.raises(InvalidSchema, match=r"unknown type 'shop\.Money'"):
        avro(record({"name": "total", "type": "shop.Money"}, name="Order"))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "strin"}, "#/type"),
        ({"type": "object", "properties": {"a": {"type": 5}}}, "#/properties/a/type"),
        ({"$schema": "http://example.com/mine"}, "unknown $schema"),
        ([1, 2], "expected an object or a boolean"),
        ({"$ref": "other.json"}, "resolves neither inside the document nor to a reference"),
        ({"$ref": "#/definitions/missing"}, "resolves neither"),
    ],
)
def test_bad_json_schema_is_refused(document: Any, message: str) -> None:
    with pytest.raises(InvalidSchema, match="invalid JSON Schema") as info:
        jsonschema(document)
    assert message in str(info.value)


def test_json_schema_references_resolve_by_name() -> None:
    address = jsonschema({"type": "object", "properties": {"zip": {"type": "string"}}})
    ref = ResolvedReference(SchemaReference("address.json", "address-value", 1), address)
    old = jsonschema({"type": "object", "properties": {"to": {"$ref": "address.json"}}}, [ref])
    wider = jsonschema({"type": "object", "properties": {"zip": {"type": ["string", "integer"]}}})
    ref2 = ResolvedReference(SchemaReference("address.json", "address-value", 2), wider)
    new = jsonschema({"type": "object", "properties": {"to": {"$ref": "address.json"}}}, [ref2])
    assert not check_compatibility(new, [(1, old)], Compatibility.BACKWARD)
    problems = check_compatibility(new, [(1, old)], Compatibility.FORWARD)
    assert problems and "TYPE_NARROWED at #/properties/to/properties/zip/type" in problems[0]


def test_transitive_levels_compare_with_every_live_version() -> None:
    v1 = avro(record({"name": "a", "type": "int"}))
    v2 = avro(record({"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""}))
    v3 = avro(record({"name": "a", "type": "int"}, {"name": "b", "type": "string"}))
    history = [(1, v1), (2, v2)]
    assert not check_compatibility(v3, history, Compatibility.BACKWARD)
    messages = check_compatibility(v3, history, Compatibility.BACKWARD_TRANSITIVE)
    assert len(messages) == 1 and "version 1" in messages[0]
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in messages[0]
    assert not check_compatibility(v3, history, Compatibility.FORWARD_TRANSITIVE)
    assert check_compatibility(v3, history, Compatibility.FULL_TRANSITIVE)
    assert not check_compatibility(v3, history, Compatibility.NONE)


def test_schema_types_cannot_mix_unless_none() -> None:
    old = avro('"string"')
    new = jsonschema({"type": "string"})
    messages = check_compatibility(new, [(1, old)], Compatibility.FULL)
    assert len(messages) == 1 and "SCHEMA_TYPE_CHANGED" in messages[0]
    assert not check_compatibility(new, [(1, old)], Compatibility.NONE)


def test_levels_and_policies_parse() -> None:
    assert Compatibility.parse("full_transitive") is Compatibility.FULL_TRANSITIVE
    assert JsonPolicy.parse("lenient") is JsonPolicy.LENIENT
    with pytest.raises(InvalidCompatibility, match="expected one of BACKWARD"):
        Compatibility.parse("SIDEWAYS")
    with pytest.raises(InvalidSchema, match="PROTOBUF is not supported"):
        SchemaType.parse("PROTOBUF")


def test_diff_names_the_levels_each_change_breaks() -> None:
    old = avro(record({"name": "a", "type": "int"}))
    new = avro(record({"name": "a", "type": "long"}, {"name": "b", "type": "string"}))
    changes = {c.rule: c for c in diff(old, new)}
    missing = changes["READER_FIELD_MISSING_DEFAULT_VALUE"]
    assert Compatibility.BACKWARD in missing.breaks and Compatibility.FORWARD not in missing.breaks
    mismatch = changes["TYPE_MISMATCH"]
    assert Compatibility.FORWARD in mismatch.breaks and Compatibility.FULL in mismatch.breaks
    json_changes = diff(
        jsonschema({"type": "string", "maxLength": 5}), jsonschema({"type": "string"})
    )
    (removed,) = json_changes
    assert removed.rule == "MAX_LENGTH_REMOVED" and removed.breaks == (
        Compatibility.FORWARD,
        Compatibility.FORWARD_TRANSITIVE,
        Compatibility.FULL,
        Compatibility.FULL_TRANSITIVE,
    )


@pytest.mark.parametrize(
    "document",
    [
        "int",
        ["null", "string"],
        {"type": "array", "items": {"type": "map", "values": "long"}},
        {"type": "record", "name": "R", "namespace": "shop", "doc": "d",
         "fields": [{"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}},
                    {"name": "b", "type": {"type": "fixed", "name": "F", "size": 4}},
                    {"name": "c", "type": ["null", "E"]}]},
    ],
)  # fmt: skip
def test_identity_is_parsing_canonical_form_without_the_extensions(document: Any) -> None:
    from fastavro.schema import to_parsing_canonical_form

    assert avro(json.dumps(document)).canonical == to_parsing_canonical_form(document)
