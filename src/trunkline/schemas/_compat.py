"""Compatibility levels: which versions a schema is compared with, and in which direction.

The schema languages are a table, :data:`FORMATS`; nothing here branches on the type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from trunkline.schemas._avro import AvroFormat
from trunkline.schemas._format import ParsedSchema, SchemaFormat
from trunkline.schemas._json import JsonSchemaFormat
from trunkline.schemas._types import Compatibility, Incompatibility, JsonPolicy, SchemaType

#: The schema languages the registry parses and compares, by type.
FORMATS: Mapping[SchemaType, SchemaFormat] = {
    SchemaType.AVRO: AvroFormat(),
    SchemaType.JSON: JsonSchemaFormat(),
}


def backward_problems(
    new: ParsedSchema, old: ParsedSchema, policy: JsonPolicy = JsonPolicy.STRICT
) -> list[Incompatibility]:
    """Why ``new`` cannot read data written with ``old`` (what BACKWARD forbids)."""
    if new.schema_type != old.schema_type:
        return [_type_changed(new, old)]
    return FORMATS[new.schema_type].check(new, old, policy)


def forward_problems(
    new: ParsedSchema, old: ParsedSchema, policy: JsonPolicy = JsonPolicy.STRICT
) -> list[Incompatibility]:
    """Why ``old`` cannot read data written with ``new`` (what FORWARD forbids)."""
    if new.schema_type != old.schema_type:
        return [_type_changed(new, old)]
    return FORMATS[new.schema_type].check(old, new, policy)


def check_compatibility(
    new: ParsedSchema,
    previous: Sequence[tuple[int, ParsedSchema]],
    level: Compatibility,
    policy: JsonPolicy = JsonPolicy.STRICT,
) -> list[str]:
    """Messages for every way ``new`` breaks ``level`` against ``previous`` (empty: none).

    Args:
        new: the candidate schema.
        previous: the subject's live versions as (version, schema), oldest first.
        level: the subject's compatibility level; transitive levels compare with every
            version, the others with the newest. Newest versions are compared first.
        policy: how JSON Schema treats properties added to open content models.
    """
    if level is Compatibility.NONE or not previous:
        return []
    compared = previous if level.transitive else previous[-1:]
    messages: list[str] = []
    for version, old in reversed(compared):
        if level.backward:
            for problem in backward_problems(new, old, policy):
                messages.append(f"{problem} [the new schema reading version {version}'s data]")
        if level.forward:
            for problem in forward_problems(new, old, policy):
                if problem.rule == "SCHEMA_TYPE_CHANGED" and level.backward:
                    continue  # reported once
                messages.append(f"{problem} [version {version} reading the new schema's data]")
    return messages


def _type_changed(new: ParsedSchema, old: ParsedSchema) -> Incompatibility:
    return Incompatibility(
        "SCHEMA_TYPE_CHANGED",
        "/",
        f"the schema type changed from {old.schema_type} to {new.schema_type}; only "
        "compatibility NONE lets one subject mix types",
    )
