"""Avro: parsing (fastavro, plus the checks it leaves out) and the form identity is decided on.

Identity is the Avro specification's Parsing Canonical Form (full names, attributes in a
fixed order, no whitespace, ``doc`` and custom properties dropped), *extended* with the
attributes that change how data resolves: field and enum ``default``, ``aliases`` and logical
types (``logicalType``, ``precision``, ``scale``). Plain PCF drops them, which would make a
schema that adds a default, or changes a decimal's scale, "the same" as the one before and
hand back the old id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastavro.schema import SchemaParseException, UnknownType, parse_schema

from trunkline.errors import InvalidSchema
from trunkline.schemas._avro_compat import check
from trunkline.schemas._format import ParsedSchema, ResolvedReference
from trunkline.schemas._types import Incompatibility, JsonPolicy, SchemaType

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Attributes of a logical type that decide how its values read.
_LOGICAL = ("logicalType", "precision", "scale")


class AvroFormat:
    """Avro schemas (``schemaType`` AVRO, Confluent's default)."""

    schema_type = SchemaType.AVRO

    def parse(self, text: str, references: Sequence[ResolvedReference]) -> ParsedSchema:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSchema(
                f"invalid Avro schema: not JSON ({exc.msg} at line {exc.lineno} column "
                f"{exc.colno}); a schema is a JSON object, array or a quoted type name"
            ) from None
        named: dict[str, Any] = {}
        for resolved in references:
            named.update(resolved.schema.named)
        inherited = frozenset(named)
        try:
            parsed = parse_schema(document, named_schemas=named, _write_hint=False)
        except UnknownType as exc:
            raise InvalidSchema(
                f"invalid Avro schema: unknown type {exc.name!r}: neither a primitive type nor "
                "a named type defined before its use in the schema or by its references"
            ) from None
        except SchemaParseException as exc:
            raise InvalidSchema(f"invalid Avro schema: {exc}") from None
        except KeyError as exc:
            raise InvalidSchema(
                f"invalid Avro schema: a type lacks its required attribute {exc.args[0]!r}"
            ) from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidSchema(f"invalid Avro schema: {exc}") from None
        canonical = _Canonical(inherited).form(parsed, "")
        return ParsedSchema(
            schema_type=SchemaType.AVRO,
            text=text,
            canonical=json.dumps(canonical, separators=(",", ":"), ensure_ascii=False),
            document=parsed,
            named=named,
            references=tuple(references),
        )

    def check(
        self, reader: ParsedSchema, writer: ParsedSchema, policy: JsonPolicy
    ) -> list[Incompatibility]:
        return check(reader.document, reader.named, writer.document, writer.named)


class _Canonical:
    """Builds the identity form of a fastavro-parsed schema, checking what fastavro does not:
    valid names, unique field names and enum symbols, unions without nested unions or
    repeated branches, and named types defined only once."""

    def __init__(self, inherited: frozenset[str]) -> None:
        self.inherited = inherited
        self.defined: set[str] = set()

    def form(self, node: Any, path: str) -> Any:
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            return self._union(node, path)
        if not isinstance(node, dict):
            raise InvalidSchema(f"invalid Avro schema at {path or '/'}: unexpected {node!r}")
        kind = node.get("type")
        if isinstance(kind, dict | list):
            return self.form(kind, path)
        if kind in PRIMITIVES:
            logical = {key: node[key] for key in _LOGICAL if key in node}
            return {"type": kind, **logical} if "logicalType" in logical else kind
        if kind in ("record", "error"):
            return self._record(node, path)
        if kind == "enum":
            out = self._named(node, "enum", path)
            symbols = node.get("symbols")
            if not isinstance(symbols, list):
                raise InvalidSchema(f"invalid Avro schema at {path}/symbols: expected a list")
            for i, symbol in enumerate(symbols):
                if not isinstance(symbol, str) or not _NAME.match(symbol):
                    raise InvalidSchema(
                        f"invalid Avro schema at {path}/symbols/{i}: enum symbol {symbol!r} "
                        "must start with a letter or _ and hold only letters, digits and _"
                    )
            out["symbols"] = symbols
            if "default" in node:
                out["default"] = node["default"]
            return self._aliased(out, node)
        if kind == "fixed":
            out = self._named(node, "fixed", path)
            size = node.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidSchema(
                    f"invalid Avro schema at {path}/size: expected a size >= 0, found {size!r}"
                )
            out["size"] = size
            out.update({key: node[key] for key in _LOGICAL if key in node})
            return self._aliased(out, node)
        if kind == "array":
            return {"type": "array", "items": self.form(node["items"], f"{path}/items")}
        if kind == "map":
            return {"type": "map", "values": self.form(node["values"], f"{path}/values")}
        if isinstance(kind, str):  # {"type": "some.Named"}
            return kind
        raise InvalidSchema(f"invalid Avro schema at {path or '/'}: unknown type {kind!r}")

    def _named(self, node: Mapping[str, Any], kind: str, path: str) -> dict[str, Any]:
        name = node.get("name")
        if not isinstance(name, str) or not all(_NAME.match(p) for p in name.split(".")):
            raise InvalidSchema(
                f"invalid Avro schema at {path or '/'}/name: {kind} name {name!r} must be "
                "dot-separated parts that start with a letter or _ and hold letters, digits, _"
            )
        if name in self.defined or name in self.inherited:
            where = "by a reference" if name in self.inherited else "earlier in the schema"
            raise InvalidSchema(
                f"invalid Avro schema at {path or '/'}/name: type {name!r} is already "
                f"defined {where}"
            )
        self.defined.add(name)
        return {"name": name, "type": kind}

    def _aliased(self, out: dict[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
        aliases = node.get("aliases")
        if aliases:
            namespace = out["name"].rpartition(".")[0]
            out["aliases"] = sorted(
                alias if "." in alias or not namespace else f"{namespace}.{alias}"
                for alias in aliases
            )
        return out

    def _record(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = self._named(node, "record", path)
        fields = []
        seen: set[str] = set()
        for i, field in enumerate(node.get("fields", [])):
            name = field.get("name")
            where = f"{path}/fields/{i}"
            if not isinstance(name, str) or not _NAME.match(name):
                raise InvalidSchema(
                    f"invalid Avro schema at {where}/name: field name {name!r} must start "
                    "with a letter or _ and hold only letters, digits and _"
                )
            if name in seen:
                raise InvalidSchema(
                    f"invalid Avro schema at {where}/name: record {out['name']!r} has two "
                    f"fields called {name!r}"
                )
            seen.add(name)
            entry: dict[str, Any] = {"name": name, "type": self.form(field["type"], where)}
            if "default" in field:
                entry["default"] = field["default"]
            if field.get("aliases"):
                entry["aliases"] = sorted(field["aliases"])
            fields.append(entry)
        out["fields"] = fields
        return self._aliased(out, node)

    def _union(self, branches: list[Any], path: str) -> list[Any]:
        seen: set[str] = set()
        out = []
        for i, branch in enumerate(branches):
            if isinstance(branch, list):
                raise InvalidSchema(
                    f"invalid Avro schema at {path}/{i}: a union may not hold another union"
                )
            formed = self.form(branch, f"{path}/{i}")
            key = _branch_key(formed)
            if key in seen:
                raise InvalidSchema(
                    f"invalid Avro schema at {path}/{i}: the union has two branches of type {key!r}"
                )
            seen.add(key)
            out.append(formed)
        return out


def _branch_key(formed: Any) -> str:
    # Unions may hold one schema of each unnamed type and one of each named type (by name).
    if isinstance(formed, str):
        return formed
    if formed.get("type") in ("record", "enum", "fixed"):
        return str(formed["name"])
    return str(formed["type"])
