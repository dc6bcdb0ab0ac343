"""Avro schema resolution: can a reader schema read every datum written with a writer schema?

The rules are the specification's "Schema Resolution" section, checked the way Avro's own
``SchemaCompatibility`` does (which Confluent and Karapace both call): the writer's type must
equal the reader's or promote to it; records match fields by name or reader alias, and a
reader field the writer lacks needs a default; writer enum symbols must exist in the reader
unless the reader enum has a default; fixed sizes must agree; every branch of a writer union
must resolve; decimals must agree on precision and scale. Paths are the reader schema's
(``/fields/2/type``), rule names are Avro's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trunkline.schemas._types import Incompatibility

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
#: Writer type -> reader types its values promote to.
PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED = ("record", "error", "enum", "fixed")
_COMPLEX = frozenset({*_NAMED, "array", "map"})


def check(
    reader: Any, reader_named: Mapping[str, Any], writer: Any, writer_named: Mapping[str, Any]
) -> list[Incompatibility]:
    """Every reason ``reader`` cannot read data written with ``writer`` (fastavro-parsed)."""
    return _Resolution(reader_named, writer_named).compare(reader, writer, "")


class _Resolution:
    def __init__(self, reader_named: Mapping[str, Any], writer_named: Mapping[str, Any]) -> None:
        self.reader_named = reader_named
        self.writer_named = writer_named
        # Pairs of named types being compared further up: recursive types (a linked list)
        # meet themselves again, and are taken as compatible there (co-induction).
        self.active: set[tuple[int, int]] = set()

    def compare(self, reader: Any, writer: Any, path: str) -> list[Incompatibility]:
        reader = _resolve(reader, self.reader_named)
        writer = _resolve(writer, self.writer_named)
        r_kind, w_kind = _kind(reader), _kind(writer)
        where = path or "/"
        if w_kind == "union":
            return self._writer_union(reader, writer, path)
        if r_kind == "union":
            for branch in reader:
                if not self.compare(branch, writer, path):
                    return []
            shown = ", ".join(_describe(_resolve(b, self.reader_named)) for b in reader)
            return [
                Incompatibility(
                    "MISSING_UNION_BRANCH",
                    where,
                    f"the reader union [{shown}] has no branch that reads the writer's "
                    f"{_describe(writer)}",
                )
            ]
        if r_kind != w_kind:
            if r_kind in PROMOTIONS.get(w_kind, ()):
                return []
            return [
                Incompatibility(
                    "TYPE_MISMATCH",
                    where,
                    f"the reader's {_describe(reader)} cannot read the writer's "
                    f"{_describe(writer)}",
                )
            ]
        if r_kind in PRIMITIVES:
            return _decimal(reader, writer, where)
        if r_kind == "array":
            return self.compare(reader["items"], writer["items"], f"{path}/items")
        if r_kind == "map":
            return self.compare(reader["values"], writer["values"], f"{path}/values")
        key = (id(reader), id(writer))
        if key in self.active:
            return []
        self.active.add(key)
        try:
            return self._named(r_kind, reader, writer, path)
        finally:
            self.active.discard(key)

    def _writer_union(self, reader: Any, writer: list[Any], path: str) -> list[Incompatibility]:
        found: list[Incompatibility] = []
        for i, branch in enumerate(writer):
            for problem in self.compare(reader, branch, path):
                found.append(
                    Incompatibility(
                        problem.rule,
                        problem.path,
                        f"{problem.message} (writer union branch {i})",
                    )
                )
        return found

    def _named(
        self, kind: str, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        if not _names_match(reader, writer):
            return [
                Incompatibility(
                    "NAME_MISMATCH",
                    f"{path}/name",
                    f"the reader's {kind} {reader['name']!r} does not match the writer's "
                    f"{writer['name']!r} (names compare without namespace; a reader alias "
                    "may name the writer's type)",
                )
            ]
        if kind == "fixed":
            if reader["size"] != writer["size"]:
                return [
                    Incompatibility(
                        "FIXED_SIZE_MISMATCH",
                        f"{path}/size",
                        f"fixed {reader['name']!r} has size {reader['size']} in the reader "
                        f"and {writer['size']} in the writer",
                    )
                ]
            return _decimal(reader, writer, path or "/")
        if kind == "enum":
            known = set(reader["symbols"])
            missing = [s for s in writer["symbols"] if s not in known]
            if missing and "default" not in reader:
                return [
                    Incompatibility(
                        "MISSING_ENUM_SYMBOLS",
                        f"{path}/symbols",
                        f"the writer's symbols {', '.join(missing)} are not in the reader's "
                        f"enum {reader['name']!r}, which has no default",
                    )
                ]
            return []
        return self._record(reader, writer, path)

    def _record(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        written = {field["name"]: field for field in writer["fields"]}
        found: list[Incompatibility] = []
        for i, field in enumerate(reader["fields"]):
            match = written.get(field["name"])
            if match is None:
                match = next((written[a] for a in field.get("aliases") or () if a in written), None)
            if match is None:
                if "default" not in field:
                    found.append(
                        Incompatibility(
                            "READER_FIELD_MISSING_DEFAULT_VALUE",
                            f"{path}/fields/{i}",
                            f"the reader's field {field['name']!r} of record "
                            f"{reader['name']!r} has no default, and the writer has no such "
                            "field",
                        )
                    )
                continue
            found.extend(self.compare(field["type"], match["type"], f"{path}/fields/{i}/type"))
        return found


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    """A schema with name references and ``{"type": <schema>}`` wrappers looked through."""
    while True:
        if isinstance(node, str) and node not in PRIMITIVES:
            node = named[node]
            continue
        if isinstance(node, dict):
            kind = node.get("type")
            if isinstance(kind, dict | list) or (
                isinstance(kind, str) and kind not in PRIMITIVES and kind not in _COMPLEX
            ):
                node = kind
                continue
        return node


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    kind = str(node["type"])
    return "record" if kind == "error" else kind


def _describe(node: Any) -> str:
    kind = _kind(node)
    if kind == "union":
        return "union"
    if isinstance(node, dict):
        if kind in _NAMED:
            return f"{kind} {node['name']!r}"
        if node.get("logicalType"):
            return f"{kind} ({node['logicalType']})"
        if kind == "array":
            return f"array of {_describe_short(node['items'])}"
        if kind == "map":
            return f"map of {_describe_short(node['values'])}"
    return kind


def _describe_short(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    return str(node.get("name") or node.get("type"))


def _names_match(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    r_name, w_name = str(reader["name"]), str(writer["name"])
    if r_name.rpartition(".")[2] == w_name.rpartition(".")[2]:
        return True
    namespace = r_name.rpartition(".")[0]
    aliases = {
        alias if "." in alias or not namespace else f"{namespace}.{alias}"
        for alias in reader.get("aliases") or ()
    }
    return w_name in aliases


def _decimal(reader: Any, writer: Any, where: str) -> list[Incompatibility]:
    if not (isinstance(reader, dict) and isinstance(writer, dict)):
        return []
    if reader.get("logicalType") != "decimal" or writer.get("logicalType") != "decimal":
        return []
    r_shape = (reader.get("precision"), reader.get("scale", 0))
    w_shape = (writer.get("precision"), writer.get("scale", 0))
    if r_shape == w_shape:
        return []
    return [
        Incompatibility(
            "DECIMAL_SCALE_OR_PRECISION_MISMATCH",
            where,
            f"the reader's decimal({r_shape[0]}, {r_shape[1]}) differs from the writer's "
            f"decimal({w_shape[0]}, {w_shape[1]}): the same bytes would mean another number",
        )
    ]
