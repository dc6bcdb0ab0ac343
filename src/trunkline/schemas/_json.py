"""JSON Schema: checking a schema against its meta-schema, references, and identity.

A schema without ``$schema`` is read as draft-07, like Confluent's and Karapace's registries;
drafts 4, 6, 2019-09 and 2020-12 are recognised by their ``$schema``. ``$ref`` must resolve
inside the document or to one of the schema's references, by reference name (or the
referenced document's ``$id``): the registry never fetches schemas from the network.
Identity is the document with its keys sorted and no whitespace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError as MetaSchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from trunkline.errors import InvalidSchema
from trunkline.schemas._format import ParsedSchema, ResolvedReference
from trunkline.schemas._json_compat import check
from trunkline.schemas._json_refs import resolve_ref, walk
from trunkline.schemas._types import Incompatibility, JsonPolicy, SchemaType


class _Unknown:
    """What validator_for answers for a ``$schema`` it does not know."""


class JsonSchemaFormat:
    """JSON Schema (``schemaType`` JSON)."""

    schema_type = SchemaType.JSON

    def parse(self, text: str, references: Sequence[ResolvedReference]) -> ParsedSchema:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSchema(
                f"invalid JSON Schema: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        if not isinstance(document, dict | bool):
            raise InvalidSchema(
                f"invalid JSON Schema: expected an object or a boolean, found "
                f"{type(document).__name__}"
            )
        validator: type[Validator] = Draft7Validator
        if isinstance(document, dict) and "$schema" in document:
            validator = validator_for(document, default=cast("type[Validator]", _Unknown))
            if validator is cast("type[Validator]", _Unknown):
                raise InvalidSchema(
                    f"invalid JSON Schema: unknown $schema {document['$schema']!r}; known "
                    "drafts are 4, 6, 7, 2019-09 and 2020-12"
                )
        if isinstance(document, dict):
            try:
                validator.check_schema(document)
            except MetaSchemaError as exc:
                where = "#/" + "/".join(str(part) for part in exc.absolute_path)
                raise InvalidSchema(f"invalid JSON Schema at {where}: {exc.message}") from None
        named: dict[str, Any] = {}
        for resolved in references:
            named.update(resolved.schema.named)
            named[resolved.reference.name] = resolved.schema.document
            if isinstance(resolved.schema.document, dict):
                ident = resolved.schema.document.get("$id")
                if isinstance(ident, str):
                    named.setdefault(ident.partition("#")[0], resolved.schema.document)
        for path, node in walk(document, "#"):
            ref = node.get("$ref") if isinstance(node, dict) else None
            if isinstance(ref, str) and resolve_ref(ref, document, named) is None:
                raise InvalidSchema(
                    f"invalid JSON Schema at {path}: $ref {ref!r} resolves neither inside the "
                    "document nor to a reference (add it to references with this name)"
                )
        return ParsedSchema(
            schema_type=SchemaType.JSON,
            text=text,
            canonical=json.dumps(
                document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ),
            document=document,
            named=named,
            references=tuple(references),
        )

    def check(
        self, reader: ParsedSchema, writer: ParsedSchema, policy: JsonPolicy
    ) -> list[Incompatibility]:
        return check(reader, writer, policy)
